"""Pacing aiortc's sender reports: only senders started under `paced_reports` change their interval."""

from __future__ import annotations

import asyncio

import aiortc.rtcrtpsender

from talkstream.transports.aiortc_patches import paced_reports


def stand_in() -> object:
    with paced_reports(lambda: 0.0):  # installs the stand-in for aiortc's `random`
        pass
    return vars(aiortc.rtcrtpsender)["random"]


def test_outside_a_paced_block_aiortc_keeps_its_own_interval() -> None:
    rnd = stand_in()
    assert all(0.0 <= rnd.random() < 1.0 for _ in range(200))  # type: ignore[attr-defined]
    with paced_reports(lambda: 4.5):
        assert rnd.random() == 4.5  # type: ignore[attr-defined]
    assert rnd.randint(3, 3) == 3  # type: ignore[attr-defined]  # the rest of the module passes through


async def test_a_task_started_in_the_block_keeps_its_pace_after_the_block() -> None:
    rnd = stand_in()
    go = asyncio.Event()

    async def report_timer() -> float:
        await go.wait()
        return float(rnd.random())  # type: ignore[attr-defined]

    with paced_reports(lambda: 7.0):
        paced = asyncio.ensure_future(report_timer())
    unpaced = asyncio.ensure_future(report_timer())
    go.set()
    assert await paced == 7.0
    assert 0.0 <= await unpaced < 1.0
