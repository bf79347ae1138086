"""The reliability suite: faults, load, bad input and secrets."""
