"""How a scenario's `inputs:` expectation compares with a session's history (adapters/replay.py)."""

from __future__ import annotations

from talkstream.adapters.scenarios import _fold

LATE = [
    "offer_received",
    "answer_sent",
    "candidate_sent",
    "candidate_sent",
    "ice_connected",
    "talk_requested",
]


def test_a_candidate_posted_after_ice_connected_is_the_networks_business() -> None:
    # Over real WebRTC the end-of-candidates POST can finish after ICE has connected.
    raced = [
        "offer_received",
        "answer_sent",
        "candidate_sent",
        "ice_connected",
        "candidate_sent",
        "talk_requested",
    ]
    assert (
        _fold(raced)
        == _fold(LATE)
        == ["offer_received", "answer_sent", "candidate_sent", "ice_connected", "talk_requested"]
    )


def test_where_the_first_candidate_goes_still_counts() -> None:
    early = ["offer_received", "candidate_sent", "candidate_sent", "answer_sent", "ice_connected"]
    assert _fold(early) == ["offer_received", "candidate_sent", "answer_sent", "ice_connected"]
    assert _fold(early) != _fold(LATE[:5])


def test_no_candidate_at_all_is_not_one_candidate() -> None:
    assert _fold(["offer_received", "answer_sent", "ice_connected"]) != _fold(LATE[:5])
