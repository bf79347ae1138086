"""The backends.

The protocol every backend keeps, the real WaveSpeed client and the bundled mock as a
transport beside it, and the origin each record names.
"""
