"""Audit: typed events, the hash-chained journal they are written to, and search over it."""
