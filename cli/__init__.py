"""The `comet` command line."""
