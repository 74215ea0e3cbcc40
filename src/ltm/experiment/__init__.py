"""Experiments: grids of runs over a base config, recorded in SQLite, reported with honest statistics."""
