"""ShareGuard: the data-protection gateway in front of a government data exchange platform."""

__version__ = "0.1.0"
