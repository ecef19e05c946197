"""Asynchronous talks' bookkeeping on the virtual clock (`engine.talks.TalkJobs`), with a renderer that
renders when told: a few at a time, per-key and queue limits, statuses, failure, delete and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from talkstream.engine.clock import VirtualClock
from talkstream.engine.errors import BadRequestError, NotFoundError, RateLimitedError
from talkstream.engine.messages import CreateTalkRequest
from talkstream.engine.ports import PreparedSpeech
from talkstream.engine.talks import TalkJobs


class Studio:
    def __init__(self) -> None:
        self.closed = 0

    async def face(self, request: Any) -> Any:
        return "face"

    async def speech(self, script: Any, *, pad_audio: float) -> Any:
        studio = self

        class Counted(PreparedSpeech):
            async def aclose(self) -> None:
                studio.closed += 1

        return Counted()

    def pcm_feed(self, sample_rate: int) -> Any:
        raise NotImplementedError


class Renderer:
    """Renders a talk once `finish(talk's file name)` is called; `fail` makes the next one raise."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.rendering: set[str] = set()
        self.most_at_once = 0
        self.fail: Exception | None = None

    async def render(
        self, face: Any, speech: Any, path: Path, *, container: str, cancelled: Callable[[], bool]
    ) -> float:
        gate = self.gates.setdefault(path.stem, asyncio.Event())
        self.rendering.add(path.stem)
        self.most_at_once = max(self.most_at_once, len(self.rendering))
        write(path, b"partial")
        try:
            await gate.wait()
            if self.fail is not None:
                raise self.fail
            if cancelled():
                raise RuntimeError("cancelled")
            write(path, b"the video")
            return 2.5
        finally:
            self.rendering.discard(path.stem)

    def finish(self, talk_id: str) -> None:
        self.gates.setdefault(talk_id, asyncio.Event()).set()


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def text(words: str = "Hello there.") -> CreateTalkRequest:
    return CreateTalkRequest.from_json({"script": {"type": "text", "input": words}})


@pytest.fixture
def world(tmp_path: Path) -> tuple[TalkJobs, Renderer, VirtualClock, Studio]:
    clock, renderer, studio = VirtualClock(), Renderer(), Studio()
    jobs = TalkJobs(
        studio=studio,
        renderer=renderer,
        clock=clock,
        folder=tmp_path,
        workers=2,
        max_waiting=2,
        max_per_key=4,
        ttl=60,
    )
    return jobs, renderer, clock, studio


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_talks_render_a_few_at_a_time_in_order(world: Any) -> None:
    jobs, renderer, _, studio = world
    a, b, c = [await jobs.create("key", text()) for _ in range(3)]
    await settle()
    assert [a.status, b.status, c.status] == ["started", "started", "created"]
    renderer.finish(a.id)
    await settle()
    assert a.status == "done" and c.status == "started" and renderer.most_at_once == 2
    assert jobs.result("key", a.id).read_bytes() == b"the video"
    body = a.to_json("http://h/talks/x/result")
    assert (body["status"], body["result_url"], body["duration"]) == ("done", "http://h/talks/x/result", 2.5)
    assert studio.closed == 1  # the speech is closed once rendered
    with pytest.raises(NotFoundError):
        jobs.result("key", b.id)  # not done yet
    renderer.finish(b.id)
    renderer.finish(c.id)
    await settle()
    assert [j.status for j in jobs.list("key")] == ["done"] * 3


async def test_limits_per_key_and_waiting(world: Any) -> None:
    jobs = world[0]
    for _ in range(4):
        await jobs.create("key", text())  # two render, two wait
    with pytest.raises(RateLimitedError, match="holds 4 talks"):
        await jobs.create("key", text())
    with pytest.raises(RateLimitedError, match="waiting"):
        await jobs.create("other", text())
    await settle()
    assert len(jobs) == 4


async def test_other_keys_see_nothing(world: Any) -> None:
    jobs = world[0]
    mine = await jobs.create("key", text())
    with pytest.raises(NotFoundError):
        jobs.get("other", mine.id)
    with pytest.raises(NotFoundError):
        jobs.result("other", mine.id)
    with pytest.raises(NotFoundError):
        await jobs.delete("other", mine.id)
    assert jobs.list("other") == [] and jobs.get("key", mine.id) is mine


async def test_a_failure_is_the_talks_error_and_leaves_no_file(world: Any, tmp_path: Path) -> None:
    jobs, renderer, _, _ = world
    renderer.fail = BadRequestError("the photo has no face")
    job = await jobs.create("key", text())
    await settle()
    renderer.finish(job.id)
    await settle()
    assert job.status == "error" and job.to_json(None)["error"] == {
        "kind": "BadRequestError",
        "description": "the photo has no face",
    }
    assert files(tmp_path) == []
    renderer.fail = RuntimeError("a bug")
    other = await jobs.create("key", text())
    await settle()
    renderer.finish(other.id)
    await settle()
    assert other.to_json(None)["error"]["kind"] == "InternalServerError"


async def test_delete_stops_a_render_or_a_wait_and_removes_the_file(world: Any, tmp_path: Path) -> None:
    jobs, renderer, _, _ = world
    rendering, _, waiting = [await jobs.create("key", text()) for _ in range(3)]
    await settle()
    assert tmp_path / f"{rendering.id}.mp4" in files(tmp_path)
    deleting = asyncio.ensure_future(jobs.delete("key", rendering.id))
    await settle()
    renderer.finish(rendering.id)
    assert await deleting is rendering
    await jobs.delete("key", waiting.id)
    await settle()
    assert tmp_path / f"{rendering.id}.mp4" not in files(tmp_path) and len(jobs) == 1
    with pytest.raises(NotFoundError):
        jobs.get("key", waiting.id)


async def test_results_expire_after_their_time(world: Any, tmp_path: Path) -> None:
    jobs, renderer, clock, _ = world
    job = await jobs.create("key", text())
    await settle()
    renderer.finish(job.id)
    await settle()
    assert job.status == "done"
    await clock.advance(59.9)
    assert jobs.get("key", job.id) is job
    await clock.advance(0.1)
    await settle()
    with pytest.raises(NotFoundError):
        jobs.get("key", job.id)
    assert files(tmp_path) == []
