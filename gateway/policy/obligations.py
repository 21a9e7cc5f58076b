"""What an allow decision obliges the gateway to do with the data: fields, masking, limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Obligations:
    """Attached to an allowed request by the authorize stage, carried out by later stages.

    fields:          the fields that may be delivered (the dataset's catalog fields, narrowed by a
                     grant); anything else in a record is removed, including fields the catalog
                     does not know (a provider's schema drift).
    masking_profile: a named masking profile; None means the default for the purpose.
    max_records:     the most records one response may carry (a grant's quota), None for no cap.
    """

    fields: frozenset[str]
    masking_profile: str | None = None
    max_records: int | None = None
