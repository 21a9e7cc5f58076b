"""Leak detectors: the detection engine and one rule file per detector."""
