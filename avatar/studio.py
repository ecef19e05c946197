"""The service's `Studio`: a stream's face from its create request, a talk's speech from its script.

What it must never do: open a local file outside `media_root`, or fetch except through the `Fetcher`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import unquote, urlsplit

from talkstream.engine.errors import BadRequestError, InternalServerError, TalkstreamError
from talkstream.engine.messages import AudioScript, CreateStreamRequest, TextScript
from talkstream.engine.ports import Face, SpeechStream

from .animator import Animator
from .fetch import Fetcher
from .portrait import MAX_IMAGE_BYTES, Box, Portrait, bundled_portrait_bytes, load_portrait
from .speech import MAX_AUDIO_BYTES, PcmFeed, TextToSpeech, audio_speech, text_speech

__all__ = ["BUNDLED_SOURCE", "MOTION_PRESETS", "AvatarStudio", "motion_for"]

_log = logging.getLogger("talkstream.avatar")
K = TypeVar("K")
V = TypeVar("V")

BUNDLED_SOURCE = "bundled:astronaut"
DEFAULT_RESOLUTION = 512

#: D-ID's driver bank names, as head-motion amplitudes (no driving videos exist offline).
MOTION_PRESETS = {"lively": 1.0, "natural": 0.6, "subtle": 0.3, "stiff": 0.0}
DEFAULT_MOTION = MOTION_PRESETS["natural"]


def motion_for(driver_url: str | None, motion_factor: float | None) -> float:
    """Head-motion amplitude for a create request's driver (``bank://lively`` ...) and motion factor."""
    amount = DEFAULT_MOTION
    if driver_url is not None:
        if not driver_url.startswith("bank://"):
            raise BadRequestError("invalid driver: only bank:// motion presets are available on this server")
        name = driver_url.removeprefix("bank://").strip("/").split("/")[0].lower()
        if name not in MOTION_PRESETS:
            raise BadRequestError(
                f"invalid driver: known presets are {', '.join('bank://' + n for n in MOTION_PRESETS)}"
            )
        amount = MOTION_PRESETS[name]
    return amount * (motion_factor if motion_factor is not None else 1.0)


CACHED_PHOTOS = 16  # bundled and local photos whose faces are kept found


class _Recent(Generic[K, V]):
    """The `size` most recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class AvatarStudio:
    """Faces and speech for the server (implements `engine.ports.Studio`)."""

    def __init__(
        self,
        *,
        tts: TextToSpeech | None,
        fetcher: Fetcher | None = None,
        media_root: Path | None = None,
        strict_voices: bool = False,
    ) -> None:
        self.tts = tts
        self.fetcher = fetcher or Fetcher()
        self.media_root = media_root.resolve() if media_root is not None else None
        self.strict_voices = strict_voices
        # Bundled and local sources: the face is found once, and streams of the same photo, size and motion
        # share one animator (it keeps nothing of a stream's; building one costs ~2 MB and some ms).
        self._portraits: _Recent[str, Portrait] = _Recent(CACHED_PHOTOS)
        self._animators: _Recent[tuple[str, int, bool, float], Animator] = _Recent(CACHED_PHOTOS * 2)

    async def face(self, request: CreateStreamRequest) -> Face:
        box = None
        if request.face is not None:
            x, y = request.face.top_left
            box = Box(round(x), round(y), request.face.size, request.face.size)
        motion = motion_for(request.driver_url, request.config.motion_factor if request.config else None)
        resolution = round(request.output_resolution) if request.output_resolution else DEFAULT_RESOLUTION
        stitch = (
            True if request.config is None or request.config.stitch is None else bool(request.config.stitch)
        )
        source = request.source_url
        cacheable = box is None and not source.startswith(("http://", "https://"))
        key = (source, resolution, stitch, motion)
        animator = self._animators.get(key) if cacheable else None
        if animator is not None:
            return animator
        portrait = self._portraits.get(source) if cacheable else None
        if portrait is None:
            data = await self._source_bytes(source)
            portrait = await asyncio.to_thread(load_portrait, data, face=box)
            if cacheable:
                self._portraits.put(source, portrait)
        animator = await asyncio.to_thread(
            Animator, portrait, resolution=resolution, stitch=stitch, motion=motion
        )
        if cacheable:
            self._animators.put(key, animator)
        return animator

    async def _source_bytes(self, source: str) -> bytes:
        if source.startswith("bundled:"):
            return bundled_portrait_bytes(source.removeprefix("bundled:").strip("/"))
        parts = urlsplit(source)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return await asyncio.to_thread(self._local_file, unquote(parts.path))
        if scheme in ("http", "https"):
            data, _ = await self.fetcher.get(source, max_bytes=MAX_IMAGE_BYTES)
            return data
        raise BadRequestError(
            "invalid source url: use https://, file:// inside the media folder, or bundled:astronaut"
        )

    def _local_file(self, path: str) -> bytes:
        if self.media_root is None:
            raise BadRequestError("invalid source url: local files are not enabled on this server")
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.media_root) or not resolved.is_file():
            raise BadRequestError("invalid source url: not a file inside the media folder")
        if resolved.stat().st_size > MAX_IMAGE_BYTES:
            raise BadRequestError(f"source image is larger than {MAX_IMAGE_BYTES} bytes")
        return resolved.read_bytes()

    async def speech(self, script: TextScript | AudioScript, *, pad_audio: float) -> SpeechStream:
        """The talk's speech, made while it plays; its first stretch is made here, so a talk whose speech
        cannot start is refused rather than accepted."""
        if isinstance(script, TextScript):
            if self.tts is None:
                raise BadRequestError("text scripts need a text-to-speech engine: install talkstream[tts]")
            voice = None
            if script.provider is not None:
                if self.strict_voices:
                    raise BadRequestError(
                        f"voice provider {script.provider.type!r} is not available on this server"
                    )
                _log.info(
                    "voice %s/%s plays as the local %s voice",
                    script.provider.type,
                    script.provider.voice_id,
                    self.tts.name,
                )
            speech = text_speech(
                self.tts, script.input, voice=voice, ssml=bool(script.ssml), pad_seconds=pad_audio
            )
        else:
            data, _ = await self.fetcher.get(script.audio_url, max_bytes=MAX_AUDIO_BYTES)
            speech = await asyncio.to_thread(audio_speech, data, pad_seconds=pad_audio)
        try:
            await speech.prime()
        except TalkstreamError:
            await speech.aclose()
            raise
        except Exception as exc:  # the engine failed: the caller learns that much, the log the rest
            await speech.aclose()
            what = (
                f"text-to-speech ({self.tts.name})"
                if isinstance(script, TextScript) and self.tts
                else "audio"
            )
            _log.exception("%s failed", what)
            raise InternalServerError(f"{what} failed") from exc
        return speech

    def pcm_feed(self, sample_rate: int) -> PcmFeed:
        return PcmFeed(sample_rate)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
