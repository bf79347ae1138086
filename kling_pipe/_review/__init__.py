"""The live review page: `kling-pipe review` and `run --review` (see `.server`)."""
