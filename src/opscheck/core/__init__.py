"""Helpers every family shares; this package imports nothing else of opscheck."""
