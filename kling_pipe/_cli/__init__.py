"""The command line.

`main` parses and dispatches; each command imports what it needs when it runs, so
`--version` and `validate` stay light.
"""
