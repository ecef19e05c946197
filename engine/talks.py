"""D-ID's asynchronous talks (``POST /talks``, ``GET /talks/{id}``): a talk rendered to a file instead of
streamed. `TalkJobs` holds each key's talks, renders them a few at a time through a `Renderer` port, and
forgets each result `ttl` seconds after it is done.

What it must never do: render on the event loop (the renderer's work runs off it), let one key see another
key's talks, hold more than `max_per_key` talks of a key or queue more than `max_waiting` in all, or keep a
result file past its talk.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs

from .clock import Clock, Timer
from .errors import (
    InternalServerError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
    TalkstreamError,
)
from .messages import CreateTalkRequest
from .ports import Face, SpeechStream, Studio
from .session import routed_id

__all__ = ["Renderer", "TalkJob", "TalkJobs", "TalkStatus", "TalkStore"]

_log = logging.getLogger("talkstream.talks")

TalkStatus = Literal["created", "started", "done", "error", "rejected"]


class Renderer(Protocol):
    """Writes a talk's video file: the face speaking the speech, frame by frame, off the event loop."""

    async def render(
        self, face: Face, speech: SpeechStream, path: Path, *, container: str, cancelled: Callable[[], bool]
    ) -> float:
        """Render to `path` (``mp4`` or ``mov``); return its duration in seconds. Stops early (and the
        caller removes the file) once `cancelled` says so."""
        ...


class TalkStore(Protocol):
    """Where the workers of a cluster share their talks' records (``GET /talks/{id}``'s body), so that any of
    them can list a key's talks, count them against its limit, and tell about a talk whose worker died. The
    files stay with the worker that rendered them. Failures raise ServiceUnavailableError."""

    async def put(self, owner: str, talk_id: str, body: dict[str, Any], keep: float) -> None:
        """Record (or update) a talk's body, kept `keep` seconds."""
        ...

    async def get(self, owner: str, talk_id: str) -> dict[str, Any] | None:
        """The body of `owner`'s talk (status ``error`` when its worker died before finishing it), or None."""
        ...

    async def listing(self, owner: str) -> builtins.list[dict[str, Any]]:
        """`owner`'s talks' bodies, newest first."""
        ...

    async def count(self, owner: str) -> int: ...

    async def remove(self, owner: str, talk_id: str) -> None: ...


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.define(eq=False)
class TalkJob:
    """One asynchronous talk: what was asked, where it stands, and its result once done."""

    id: str
    owner: str
    request: CreateTalkRequest
    created_at: str
    status: TalkStatus = "created"
    started_at: str | None = None
    modified_at: str = ""
    duration: float | None = None
    error: TalkstreamError | None = None
    path: Path | None = None  # the result file, once done
    cancelled: bool = False
    task: asyncio.Task[None] | None = None
    expiry: Timer | None = None

    def to_json(self, result_url: str | None) -> dict[str, Any]:
        """``GET /talks/{id}``'s body, in D-ID's shape."""
        request = self.request
        body: dict[str, Any] = {
            "id": self.id,
            "object": "talk",
            "user_id": self.owner,
            "created_by": self.owner,
            "source_url": request.source_url,
            "created_at": self.created_at,
            "modified_at": self.modified_at or self.created_at,
            "started_at": self.started_at,
            "status": self.status,
            "config": request.config.to_json() if request.config else {},
        }
        if request.script.type == "audio":
            body["audio_url"] = request.script.to_json()["audio_url"]
        if request.name is not None:
            body["name"] = request.name
        if request.user_data is not None:
            body["user_data"] = request.user_data
        if self.status == "done":
            body["result_url"] = result_url
            body["duration"] = self.duration
        if self.error is not None:
            body["error"] = self.error.to_body()
        return body


def _deleted(job: TalkJob) -> bool:
    return job.cancelled


class TalkJobs:
    """The asynchronous talks of a server: at most `workers` render at once (the rest wait in order, at most
    `max_waiting` in all), a key holds at most `max_per_key` talks, and each result is kept `ttl` seconds
    after it is done (then the talk and its file are gone). `worker`, in a cluster, leads each talk id (a
    proxy routes the talk's later requests here, where its file is)."""

    def __init__(
        self,
        *,
        studio: Studio,
        renderer: Renderer,
        clock: Clock,
        folder: Path,
        workers: int = 1,
        max_waiting: int = 50,
        max_per_key: int = 100,
        ttl: float = 24 * 3600.0,
        retry_after: float = 10.0,
        worker: str | None = None,
        store: TalkStore | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.studio = studio
        self.renderer = renderer
        self.clock = clock
        self.folder = folder
        self.max_waiting = max_waiting
        self.max_per_key = max_per_key
        self.ttl = ttl
        self.retry_after = retry_after
        self._slots = asyncio.Semaphore(workers)
        self._jobs: dict[str, TalkJob] = {}
        self.worker = worker
        self.store = store
        self.draining = False  # no new talks (503): the server is about to stop

    # -- the operations ------------------------------------------------------------------------------------

    async def create(self, owner: str, request: CreateTalkRequest) -> TalkJob:
        """A new talk of `owner`'s, queued to render (recorded in the store first, when there is one)."""
        if self.draining:
            raise ServiceUnavailableError(
                "this server is shutting down: ask again (another takes it)", retry_after=1
            )
        if self.store is not None:
            mine = await self.store.count(owner)
        else:
            mine = sum(job.owner == owner for job in self._jobs.values())
        if mine >= self.max_per_key:
            raise RateLimitedError(
                f"this key holds {mine} talks: delete some first", retry_after=self.retry_after
            )
        created = sum(job.status == "created" for job in self._jobs.values())
        free = self.workers - sum(job.status == "started" for job in self._jobs.values())
        if created - max(free, 0) >= self.max_waiting:
            raise RateLimitedError("too many talks waiting to be rendered", retry_after=self.retry_after)
        now = _now_iso()
        job = TalkJob(
            id="tlk_" + routed_id(self.worker, secrets.token_urlsafe(15)),
            owner=owner,
            request=request,
            created_at=now,
        )
        if self.store is not None:
            await self.store.put(owner, job.id, job.to_json(None), self.ttl + 3600.0)  # 503: nothing made
        self._jobs[job.id] = job
        job.task = asyncio.ensure_future(self._run(job))
        _log.info("talk %s created for %s", job.id, owner)
        return job

    def get(self, owner: str, talk_id: str) -> TalkJob:
        job = self._jobs.get(talk_id)
        if job is None or job.owner != owner:
            raise NotFoundError(f"talk {talk_id} not found")
        return job

    def list(self, owner: str) -> list[TalkJob]:
        """`owner`'s talks, newest first."""
        return sorted(
            (job for job in self._jobs.values() if job.owner == owner),
            key=lambda j: j.created_at,
            reverse=True,
        )

    async def delete(self, owner: str, talk_id: str) -> TalkJob:
        """Forget a talk: a render in progress stops, the result file goes."""
        job = self.get(owner, talk_id)
        await self._forget(job)
        return job

    async def describe(self, owner: str, talk_id: str) -> dict[str, Any]:
        """``GET /talks/{id}``'s body (``result_url`` left for the caller): this worker's own talk, else the
        store's record of it; 404 when neither has it."""
        job = self._jobs.get(talk_id)
        if job is not None and job.owner == owner:
            return job.to_json(None)
        body = await self.store.get(owner, talk_id) if self.store is not None else None
        if body is None:
            raise NotFoundError(f"talk {talk_id} not found")
        return body

    async def describe_all(self, owner: str) -> builtins.list[dict[str, Any]]:
        """`owner`'s talks' bodies, newest first (the whole cluster's, when there is a store)."""
        if self.store is None:
            return [job.to_json(None) for job in self.list(owner)]
        return await self.store.listing(owner)

    async def delete_anywhere(self, owner: str, talk_id: str) -> dict[str, Any]:
        """Delete a talk: this worker's own (its render stops, its file goes), or, in a cluster, one whose
        worker is gone (only its record is left)."""
        job = self._jobs.get(talk_id)
        if job is not None and job.owner == owner:
            await self._forget(job)
            return job.to_json(None)
        body = await self.describe(owner, talk_id)
        if self.store is not None:
            await self.store.remove(owner, talk_id)
        return body

    def result(self, owner: str, talk_id: str) -> Path:
        """The file of a done talk of `owner`'s; 404 for anyone else, or before it is done."""
        job = self.get(owner, talk_id)
        if job.status != "done" or job.path is None or not job.path.exists():
            raise NotFoundError(f"talk {talk_id} has no result (it is {job.status})")
        return job.path

    def __len__(self) -> int:
        return len(self._jobs)

    def pending(self) -> int:
        """Talks waiting for or in their render."""
        return sum(job.status in ("created", "started") for job in self._jobs.values())

    async def drain(self, within: float) -> int:
        """Take no new talks (503) and wait, at most `within` seconds, for the renders waiting or under way;
        return how many are left."""
        self.draining = True
        deadline = self.clock.now() + within
        while self.pending() and self.clock.now() < deadline:
            await self.clock.sleep(min(0.05, max(0.0, deadline - self.clock.now())))
        return self.pending()

    async def aclose(self) -> None:
        for job in list(self._jobs.values()):
            await self._forget(job)

    # -- inside ------------------------------------------------------------------------------------------

    async def _run(self, job: TalkJob) -> None:
        async with self._slots:
            if job.cancelled:
                return
            job.status, job.started_at = "started", _now_iso()
            job.modified_at = job.started_at
            await self._publish(job)
            request = job.request
            path = self.folder / f"{job.id}.{request.result_format}"
            speech: SpeechStream | None = None
            try:
                face = await self.studio.face(request.as_stream())
                pad = request.config.pad_audio if request.config and request.config.pad_audio else 0.0
                speech = await self.studio.speech(request.script, pad_audio=pad)
                job.duration = await self.renderer.render(
                    face, speech, path, container=request.result_format, cancelled=lambda: job.cancelled
                )
            except asyncio.CancelledError:
                path.unlink(missing_ok=True)
                raise
            except Exception as exc:
                path.unlink(missing_ok=True)
                error = exc if isinstance(exc, TalkstreamError) else InternalServerError("the talk failed")
                if not isinstance(exc, TalkstreamError):
                    _log.exception("talk %s failed", job.id)
                job.status, job.error = "error", error
            else:
                if _deleted(job):  # while its last frames were written
                    path.unlink(missing_ok=True)
                    return
                job.status, job.path = "done", path
                _log.info("talk %s done (%.2f s)", job.id, job.duration)
            finally:
                if speech is not None:
                    await speech.aclose()
                job.modified_at = _now_iso()
        if not job.cancelled:
            await self._publish(job)
            job.expiry = self.clock.call_later(self.ttl, lambda: self._expire(job))

    async def _publish(self, job: TalkJob) -> None:
        """The store learns the talk's new status (if it cannot, it says so on the next change)."""
        if self.store is None or job.cancelled:
            return
        keep = self.ttl if job.status in ("done", "error") else self.ttl + 3600.0
        try:
            await self.store.put(job.owner, job.id, job.to_json(None), keep)
        except TalkstreamError as exc:
            _log.warning("talk %s: the store missed its status %s (%s)", job.id, job.status, exc.description)

    def _expire(self, job: TalkJob) -> Coroutine[None, None, None]:
        _log.info("talk %s expired", job.id)
        return self._forget(job)

    async def _forget(self, job: TalkJob) -> None:
        if self._jobs.get(job.id) is not job:
            return
        del self._jobs[job.id]
        job.cancelled = True
        if job.expiry is not None:
            job.expiry.cancel()
        task = job.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()  # waiting for a slot, or rendering: the renderer stops and drops its file
            await asyncio.gather(task, return_exceptions=True)
        if job.path is not None:
            job.path.unlink(missing_ok=True)
        if self.store is not None:
            try:
                await self.store.remove(job.owner, job.id)
            except TalkstreamError as exc:  # its record expires on its own
                _log.warning("talk %s: the store kept its record (%s)", job.id, exc.description)
