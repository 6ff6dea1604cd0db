"""The HTTP API served by `postflow run --http`."""
