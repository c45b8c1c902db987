"""Repositories: every SQL statement Comet runs lives here, grouped by what it reads and writes."""
