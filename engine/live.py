"""Talks whose input is still arriving while they play (D-ID's WebSocket API): `LiveSpeech`, a `SpeechStream`
fed stretch by stretch, and `PhraseSplitter`, which cuts streamed text into phrases to speak as soon as each
is complete.

What it must never do: let the player run dry without a frame to send (it gets silence, one frame at a
time), hold more than `LiveSpeech.ahead` seconds of speech, or cut inside an SSML tag.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re

import numpy as np

from .clock import Clock, run_with_timeout
from .ports import FRAME_SECONDS, SAMPLES_PER_VIDEO_FRAME, Speech

__all__ = ["LiveSpeech", "PhraseSplitter"]


def _silence(frames: int = 1) -> Speech:
    return Speech(
        pcm=np.zeros(frames * SAMPLES_PER_VIDEO_FRAME, np.int16), openness=np.zeros(frames, np.float32)
    )


class LiveSpeech:
    """A talk's speech put in as it is made, from pieces a client streams.

    `put` adds a stretch of whole frames (waiting while `ahead` seconds are already queued: the feeder slows
    to the pace of the talk); `end` says nothing more comes. The player's `next` gets the queued stretches in
    order; when none is there it waits as long as the stretch it got before lasts (the player asks one ahead,
    so that is when it would run dry), then gets one frame of silence, and again, until speech comes or the
    end. A source quiet for `give_up` seconds is taken as ended (a client that never sent its last chunk).
    """

    def __init__(self, clock: Clock, *, ahead: float = 5.0, give_up: float = 10.0) -> None:
        self._clock = clock
        self.ahead = ahead
        self.give_up = give_up
        self._queue: collections.deque[Speech] = collections.deque()
        self._queued_seconds = 0.0
        self._ended = False
        self._closed = False
        self._changed = asyncio.Event()
        self._last_length = 2 * FRAME_SECONDS  # the first stretch may take a frame's time to come
        self._quiet_since: float | None = None
        self.spoken = 0.0  # seconds of real speech handed to the player (silence not counted)

    @property
    def duration(self) -> float:
        """What is known so far: the speech handed out and queued (a live talk's length is not known)."""
        return self.spoken + self._queued_seconds

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def closed(self) -> bool:
        """The talk is over for whoever feeds it: played out, cut by an interrupt, or its stream gone."""
        return self._closed

    async def put(self, stretch: Speech) -> None:
        """Queue `stretch` (whole frames, as every stretch of a talk but its last) for the player."""
        if self._ended or self._closed:
            return
        while self._queued_seconds > self.ahead and not self._closed:
            self._changed.clear()
            await self._changed.wait()
        if self._closed or stretch.frames == 0:
            return
        self._queue.append(stretch)
        self._queued_seconds += stretch.duration
        self._changed.set()

    def end(self) -> None:
        """Nothing more comes: the talk ends once what is queued has played."""
        self._ended = True
        self._changed.set()

    async def next(self) -> Speech | None:
        if self._closed:
            return None
        if not self._queue and not self._ended:
            await self._wait(max(self._last_length - FRAME_SECONDS, 0.0))
        if self._queue:
            stretch = self._queue.popleft()
            self._queued_seconds -= stretch.duration
            self.spoken += stretch.duration
            self._quiet_since = None
            self._changed.set()  # room for the feeder
        elif self._ended or self._closed:
            return None
        else:
            now = self._clock.now()
            if self._quiet_since is None:
                self._quiet_since = now
            if now - self._quiet_since >= self.give_up:
                self._ended = True
                return None
            stretch = _silence()
        self._last_length = stretch.duration
        return stretch

    async def _wait(self, within: float) -> None:
        if within <= 0:
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await run_with_timeout(self._clock, within, self._changed.wait())

    async def aclose(self) -> None:
        self._closed = True
        self._queue.clear()
        self._queued_seconds = 0.0
        self._changed.set()


# A phrase ends after sentence punctuation followed by space, or after an SSML break; never inside a tag.
_END = re.compile(r"[.!?;:\u2026]+[\"')\]]*(?=\s)|<\s*break\b[^>]*>")
_TAG = re.compile(r"<[^>]*>?")


class PhraseSplitter:
    """Collects streamed text and gives back the phrases it completes: up to a sentence end (``. ! ? ; :``
    and an ellipsis, before a space) or an SSML ``<break>``; a clause end (a comma) once the phrase holds
    `long_words` words; any space once it holds `max_words` (text with no punctuation still gets spoken),
    and `max_chars` characters in any case. `flush` gives the rest."""

    def __init__(self, *, long_words: int = 8, max_words: int = 30, max_chars: int = 1000) -> None:
        self._text = ""
        self.long_words = long_words
        self.max_words = max_words
        self.max_chars = max_chars  # text with no space at all is cut here (and never held longer)

    def feed(self, text: str) -> list[str]:
        self._text += text
        phrases = []
        while (cut := self._cut()) is not None:
            phrase, self._text = self._text[:cut], self._text[cut:]
            if phrase.strip():
                phrases.append(phrase.strip())
        return phrases

    def flush(self) -> str:
        rest, self._text = self._text.strip(), ""
        return rest

    @property
    def pending(self) -> str:
        return self._text

    def _cut(self) -> int | None:
        text = self._text
        tags = [(m.start(), m.end()) for m in _TAG.finditer(text)]

        def in_tag(i: int) -> bool:
            return any(a < i < b for a, b in tags)

        for match in _END.finditer(text):
            if not in_tag(match.start()):
                return match.end()
        words = [m for m in re.finditer(r"\S+\s", text) if not in_tag(m.start())]
        if len(words) >= self.long_words:
            for i, word in enumerate(words):
                if i + 1 >= self.long_words and word.group().rstrip().endswith((",", "\u2013", "\u2014")):
                    return word.end()
        if len(words) >= self.max_words:
            return words[self.max_words - 1].end()
        if len(text) > self.max_chars:
            space = text.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 and not in_tag(space) else self.max_chars
        return None
