"""Alerts: what the detectors found, triaged by the security team, with the response taken."""
