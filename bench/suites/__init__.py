"""Benchmark suites; each returns its figures (for latest.json) and a Markdown section."""
