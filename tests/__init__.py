"""kling-pipe's tests; helper modules are imported as `tests.<module>`."""
