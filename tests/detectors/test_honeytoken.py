"""Decoys registered at run time: they join the honeytokens in place, and a look-up fires."""

from __future__ import annotations

import dataclasses

from detectors.engine import Detection, DetectionEngine
from detectors.kinds.honeytoken import Honeytoken
from detectors.observation import Observation
from detectors.rules import load_rules
from tests.detectors.test_rules import CONTEXT, KINDS


def test_decoys_grow_the_honeytoken_set_in_place_and_a_looked_up_decoy_fires() -> None:
    [rule] = [r for r in load_rules(kinds=KINDS) if r.kind == "honeytoken"]
    found: list[Detection] = []
    engine = DetectionEngine([rule], CONTEXT, found.append)
    [detector] = engine.detectors
    assert isinstance(detector, Honeytoken)
    subjects = detector.subjects
    before = len(subjects)
    decoy = "110105199001011234"
    detector.add_subjects({CONTEXT.subject_hasher(decoy)})
    detector.add_subjects({CONTEXT.subject_hasher(f"decoy-{i}") for i in range(1000)})
    # Not copied per response: the same set, grown.
    assert detector.subjects is subjects and len(subjects) == before + 1001
    obs = Observation(
        ts=1_760_000_000.0,
        request_id="r1",
        user="sw_officer",
        department="商务局",
        credential="c1",
        source_ip="10.0.0.1",
        zone="intranet",
        dataset="population",
        sensitivity="L3",
        action="read",
        record_key=None,
        purpose="p",
        case_id=None,
        decision="allow",
        status=200,
        queried=(CONTEXT.subject_hasher(decoy),),
    )
    engine.process(obs)
    assert [d.finding.evidence["decoys"] for d in found] == [1]
    engine.process(
        dataclasses.replace(
            obs, request_id="r2", queried=(CONTEXT.subject_hasher("110105199001019999"),)
        )
    )
    assert len(found) == 1
