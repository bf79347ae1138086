"""The records.

The store of attempts, the lock file beside the shot list, the user-level task registry, the
one durable writer and the assessment all commands share.
"""
