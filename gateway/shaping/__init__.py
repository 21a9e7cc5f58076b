"""Shaping what leaves the gateway: field projection, masking operators, pseudonyms and the scanner.

Public surface: `ShaperFactory` builds a `Shaper` per request; `load_masking` reads the profiles;
`Scanner` finds undeclared personal data; `pseudonym_for` recomputes a recipient's pseudonym
(leak tracing).
"""

from gateway.shaping.profiles import MaskingPolicy, Profile, load_masking
from gateway.shaping.pseudonyms import PseudonymKey, pseudonym_for
from gateway.shaping.scanner import Scanner, ScanResult
from gateway.shaping.shaper import Record, Shaper, ShaperFactory, ShapingPlan

__all__ = [
    "MaskingPolicy",
    "Profile",
    "PseudonymKey",
    "Record",
    "ScanResult",
    "Scanner",
    "Shaper",
    "ShaperFactory",
    "ShapingPlan",
    "load_masking",
    "pseudonym_for",
]
