"""Grants (授权): who may read which fields of which dataset, for which purposes, when and how much."""
