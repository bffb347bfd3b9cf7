"""Revisions of the records schema, oldest first by revision id (v0001_..., v0002_...)."""
