"""Typed models of every request and response body of D-ID's ``/talks/streams`` and ``/clips/streams``:
`from_json` raises only `ValidationError` (naming the field's path), `to_json` gives what D-ID's clients
send.

What it must never do: I/O, import a backend, or decide URL policy (the fetcher's job).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, cast

import attrs

from .errors import ValidationError

__all__ = [
    "AudioScript",
    "Background",
    "CreateClipStreamRequest",
    "CreateStreamRequest",
    "CreateStreamResponse",
    "CreateTalkRequest",
    "DeleteRequest",
    "ErrorBody",
    "FaceBox",
    "IceCandidateRequest",
    "IceServer",
    "Presenter",
    "PresentersResponse",
    "Provider",
    "SdpRequest",
    "SessionDescription",
    "StatusResponse",
    "StreamAudioChunk",
    "StreamConfig",
    "StreamInterrupt",
    "StreamTextChunk",
    "TalkConfig",
    "TalkInfo",
    "TalkRequest",
    "TalkResponse",
    "TextScript",
    "WebSocketMessage",
]

MAX_URL = 2048
MAX_SDP = 100_000
MAX_ID = 512
MAX_TEXT = 40_000
MAX_CANDIDATE = 1024

T = TypeVar("T")
_MISSING = object()


class _Fields:
    """Reads one JSON object's fields, each failure a `ValidationError` at `path.field`."""

    __slots__ = ("data", "path")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ValidationError(path, "must be an object")
        self.data = data
        self.path = path

    def at(self, name: str) -> str:
        return f"{self.path}.{name}"

    def raw(self, name: str, *, required: bool = False) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise ValidationError(self.at(name), "required")
            return None
        return value

    def str_(
        self,
        name: str,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int = MAX_URL,
        blank_ok: bool = True,
    ) -> str | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        return _string(value, self.at(name), min_len=min_len, max_len=max_len, blank_ok=blank_ok)

    def bool_(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise ValidationError(self.at(name), "must be a boolean")
        return value

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        return _number(
            value, self.at(name), minimum=minimum, maximum=maximum, exclusive_minimum=exclusive_minimum
        )

    def int_(self, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        return _integer(value, self.at(name), minimum=minimum, maximum=maximum)

    def enum(self, name: str, choices: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            raise ValidationError(self.at(name), "must be one of: " + ", ".join(choices))
        return value

    def obj(self, name: str, *, required: bool = False) -> _Fields | None:
        value = self.raw(name, required=required)
        return None if value is None else _Fields(value, self.at(name))

    def json_object(self, name: str) -> dict[str, Any] | None:
        """A free-form JSON object, checked to be JSON all the way down (no NaN, no cycles)."""
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValidationError(self.at(name), "must be an object")
        return cast(dict[str, Any], _plain_json(value, self.at(name)))


def _string(
    value: object, path: str, *, min_len: int = 0, max_len: int = MAX_URL, blank_ok: bool = True
) -> str:
    if not isinstance(value, str):
        raise ValidationError(path, "must be a string")
    if len(value) < min_len:
        raise ValidationError(path, f"must be at least {min_len} characters")
    if len(value) > max_len:
        raise ValidationError(path, f"must be at most {max_len} characters")
    if not blank_ok and not value.strip():
        raise ValidationError(path, "must not be blank")
    return value


def _number(
    value: object,
    path: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(path, "must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(path, "is out of range") from None
    if not math.isfinite(number):
        raise ValidationError(path, "must be a finite number")
    if minimum is not None and (number <= minimum if exclusive_minimum else number < minimum):
        raise ValidationError(
            path, f"must be {'greater than' if exclusive_minimum else 'at least'} {minimum:g}"
        )
    if maximum is not None and number > maximum:
        raise ValidationError(path, f"must be at most {maximum:g}")
    return number


def _integer(value: object, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(path, "must be an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValidationError(path, "must be an integer")
        value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError(path, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(path, f"must be at most {maximum}")
    return value


def _plain_json(value: object, path: str, depth: int = 0) -> object:
    """Copy of a JSON value, refusing what JSON cannot say and nesting deeper than 32 levels."""
    if depth > 32:
        raise ValidationError(path, "is nested too deeply")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, "must be a finite number")
        return value
    if isinstance(value, list | tuple):
        return [_plain_json(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(path, "keys must be strings")
            out[key] = _plain_json(item, f"{path}.{key}", depth + 1)
        return out
    raise ValidationError(path, "must be JSON")


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# -- shared parts -------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class IceServer:
    """An ICE server (D-ID's ``ice_servers`` entries): ``urls`` is one URL or several, kept as sent. The one
    ICE server type of talkstream: the server's settings, the create answer, both sides' peers."""

    urls: str | tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> IceServer:
        f = _Fields(data, path)
        urls = f.raw("urls", required=True)
        parsed: str | tuple[str, ...]
        if isinstance(urls, list):
            if not urls:
                raise ValidationError(f.at("urls"), "must not be empty")
            parsed = tuple(_string(u, f"{f.at('urls')}[{i}]", min_len=1) for i, u in enumerate(urls))
        else:
            parsed = _string(urls, f.at("urls"), min_len=1)
        return cls(urls=parsed, username=f.str_("username"), credential=f.str_("credential"))

    @property
    def url_list(self) -> tuple[str, ...]:
        """Its URLs, one or several, as a tuple."""
        return (self.urls,) if isinstance(self.urls, str) else self.urls

    def to_json(self) -> dict[str, Any]:
        urls = list(self.urls) if isinstance(self.urls, tuple) else self.urls
        return _drop_none({"urls": urls, "username": self.username, "credential": self.credential})


@attrs.frozen(kw_only=True)
class SessionDescription:
    """An SDP offer or answer (D-ID's ``jsep``)."""

    type: Literal["offer", "answer"]
    sdp: str

    @classmethod
    def from_json(cls, data: object, path: str = "body", *, expect: str | None = None) -> SessionDescription:
        f = _Fields(data, path)
        kind = f.enum("type", (expect,) if expect else ("offer", "answer"), required=True)
        sdp = f.str_("sdp", required=True, min_len=1, max_len=MAX_SDP, blank_ok=False)
        assert kind is not None and sdp is not None
        return cls(type=cast(Literal["offer", "answer"], kind), sdp=sdp)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "sdp": self.sdp}


# -- create -------------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FaceBox:
    """Where the face is, when the caller says so: a square of `size` at `top_left` (may be negative)."""

    size: int
    top_left: tuple[float, float]

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> FaceBox:
        f = _Fields(data, path)
        size = f.int_("size", minimum=0, maximum=100_000)
        if size is None:
            raise ValidationError(f.at("size"), "required")
        corner = f.raw("top_left", required=True)
        if not isinstance(corner, list) or len(corner) != 2:
            raise ValidationError(f.at("top_left"), "must be a list of 2 numbers")
        x = _number(corner[0], f"{f.at('top_left')}[0]", minimum=-8000, maximum=8000)
        y = _number(corner[1], f"{f.at('top_left')}[1]", minimum=-8000, maximum=8000)
        return cls(size=size, top_left=(x, y))

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "top_left": list(self.top_left)}


@attrs.frozen(kw_only=True)
class StreamConfig:
    stitch: bool | None = None
    motion_factor: float | None = None
    align_expand_factor: float | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> StreamConfig:
        f = _Fields(data, path)
        return cls(
            stitch=f.bool_("stitch"),
            motion_factor=f.number("motion_factor", minimum=0, maximum=10),
            align_expand_factor=f.number("align_expand_factor", minimum=0, maximum=10),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(attrs.asdict(self))


@attrs.frozen(kw_only=True)
class CreateStreamRequest:
    """``POST /talks/streams``: only `source_url` is required. `fluent` is what D-ID's client SDK sends for
    talks streams too (D-ID's schema lists it for clips and agents streams only)."""

    source_url: str
    driver_url: str | None = None
    face: FaceBox | None = None
    config: StreamConfig | None = None
    compatibility_mode: Literal["on", "off", "auto"] | None = None
    stream_warmup: bool | None = None
    session_timeout: float | None = None
    output_resolution: float | None = None
    fluent: bool | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> CreateStreamRequest:
        f = _Fields(data, path)
        source = f.str_("source_url", required=True, min_len=1, blank_ok=False)
        face = f.obj("face")
        config = f.obj("config")
        assert source is not None
        return cls(
            source_url=source,
            driver_url=f.str_("driver_url", min_len=1),
            face=FaceBox.from_json(face.data, face.path) if face else None,
            config=StreamConfig.from_json(config.data, config.path) if config else None,
            compatibility_mode=cast(Any, f.enum("compatibility_mode", ("on", "off", "auto"))),
            stream_warmup=f.bool_("stream_warmup"),
            session_timeout=f.number("session_timeout", minimum=0, maximum=300, exclusive_minimum=True),
            output_resolution=f.number("output_resolution", minimum=150, maximum=1280),
            fluent=f.bool_("fluent"),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "source_url": self.source_url,
                "driver_url": self.driver_url,
                "face": self.face.to_json() if self.face else None,
                "config": self.config.to_json() if self.config else None,
                "compatibility_mode": self.compatibility_mode,
                "stream_warmup": self.stream_warmup,
                "session_timeout": self.session_timeout,
                "output_resolution": self.output_resolution,
                "fluent": self.fluent,
            }
        )


@attrs.frozen(kw_only=True)
class CreateClipStreamRequest:
    """``POST /clips/streams``: a presenter this server offers instead of a photo; only `presenter_id` is
    required. `driver_id` is what D-ID's demo and older SDKs send (D-ID's current schema dropped it)."""

    presenter_id: str
    driver_id: str | None = None
    compatibility_mode: Literal["on", "off", "auto"] | None = None
    stream_warmup: bool | None = None
    session_timeout: float | None = None
    output_resolution: float | None = None
    fluent: bool | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> CreateClipStreamRequest:
        f = _Fields(data, path)
        presenter = f.str_("presenter_id", required=True, min_len=1, max_len=MAX_ID, blank_ok=False)
        assert presenter is not None
        return cls(
            presenter_id=presenter,
            driver_id=f.str_("driver_id", min_len=1, max_len=MAX_ID, blank_ok=False),
            compatibility_mode=cast(Any, f.enum("compatibility_mode", ("on", "off", "auto"))),
            stream_warmup=f.bool_("stream_warmup"),
            session_timeout=f.number("session_timeout", minimum=0, maximum=300, exclusive_minimum=True),
            output_resolution=f.number("output_resolution", minimum=150, maximum=1280),
            fluent=f.bool_("fluent"),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(attrs.asdict(self))

    def as_stream(self, source_url: str) -> CreateStreamRequest:
        """The same stream as ``/talks/streams`` would make of the presenter's photo."""
        return CreateStreamRequest(
            source_url=source_url,
            compatibility_mode=self.compatibility_mode,
            stream_warmup=self.stream_warmup,
            session_timeout=self.session_timeout,
            output_resolution=self.output_resolution,
            fluent=self.fluent,
        )


@attrs.frozen(kw_only=True)
class Presenter:
    """One of ``GET /clips/presenters``: a presenter a clips stream may ask for by `presenter_id`."""

    presenter_id: str
    driver_id: str
    name: str
    gender: str = "other"
    owner_id: str = "talkstream"
    preview_url: str = ""
    talking_preview_url: str = ""
    thumbnail_url: str = ""
    modified_at: str = "2026-12-02T00:00:00.000Z"
    is_streamable: bool = True

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> Presenter:
        f = _Fields(data, path)
        presenter = f.str_("presenter_id", required=True, min_len=1, max_len=MAX_ID)
        assert presenter is not None
        return cls(
            presenter_id=presenter,
            driver_id=f.str_("driver_id", max_len=MAX_ID) or "",
            name=f.str_("name", max_len=1000) or "",
            gender=f.str_("gender", max_len=100) or "other",
            owner_id=f.str_("owner_id", max_len=MAX_ID) or "",
            preview_url=f.str_("preview_url") or "",
            talking_preview_url=f.str_("talking_preview_url") or "",
            thumbnail_url=f.str_("thumbnail_url") or "",
            modified_at=f.str_("modified_at", max_len=100) or "",
            is_streamable=bool(f.bool_("is_streamable")),
        )

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class PresentersResponse:
    """``200`` to ``GET /clips/presenters`` (and, with one, to ``GET /clips/presenters/{id}``)."""

    presenters: tuple[Presenter, ...]

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> PresentersResponse:
        f = _Fields(data, path)
        items = f.raw("presenters", required=True)
        if not isinstance(items, list):
            raise ValidationError(f.at("presenters"), "must be a list")
        return cls(
            presenters=tuple(
                Presenter.from_json(p, f"{f.at('presenters')}[{i}]") for i, p in enumerate(items)
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {"presenters": [p.to_json() for p in self.presenters]}


@attrs.frozen(kw_only=True)
class CreateStreamResponse:
    """``201`` to create: the stream's id, its session id, the server's offer and the ICE servers; `fluent`
    and `interrupt_enabled` as D-ID's client SDK reads them (None: the server did not say)."""

    id: str
    session_id: str
    offer: SessionDescription
    ice_servers: tuple[IceServer, ...] = ()
    fluent: bool | None = None
    interrupt_enabled: bool | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> CreateStreamResponse:
        f = _Fields(data, path)
        stream_id = f.str_("id", required=True, min_len=1, max_len=MAX_ID)
        session_id = f.str_("session_id", min_len=1, max_len=8192)
        name = "offer" if f.raw("offer") is not None else "jsep"
        offer = f.obj(name, required=True)
        servers = f.raw("ice_servers")
        if servers is not None and not isinstance(servers, list):
            raise ValidationError(f.at("ice_servers"), "must be a list")
        assert stream_id is not None and offer is not None
        return cls(
            id=stream_id,
            session_id=session_id or "",
            offer=SessionDescription.from_json(offer.data, offer.path, expect="offer"),
            ice_servers=tuple(
                IceServer.from_json(s, f"{f.at('ice_servers')}[{i}]") for i, s in enumerate(servers or [])
            ),
            fluent=f.bool_("fluent"),
            interrupt_enabled=f.bool_("interrupt_enabled"),
        )

    def to_json(self) -> dict[str, Any]:
        offer = self.offer.to_json()
        return _drop_none(
            {
                "id": self.id,
                "session_id": self.session_id,
                "offer": offer,
                "jsep": dict(offer),
                "ice_servers": [s.to_json() for s in self.ice_servers],
                "fluent": self.fluent,
                "interrupt_enabled": self.interrupt_enabled,
            }
        )


# -- sdp, ice, status, delete -----------------------------------------------------------------------------


def _session_id(f: _Fields) -> str | None:
    return f.str_("session_id", max_len=8192)


@attrs.frozen(kw_only=True)
class SdpRequest:
    """``POST /talks/streams/{id}/sdp``: the client's answer."""

    answer: SessionDescription
    session_id: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> SdpRequest:
        f = _Fields(data, path)
        answer = f.obj("answer", required=True)
        assert answer is not None
        return cls(
            answer=SessionDescription.from_json(answer.data, answer.path, expect="answer"),
            session_id=_session_id(f),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"answer": self.answer.to_json(), "session_id": self.session_id})


@attrs.frozen(kw_only=True)
class IceCandidateRequest:
    """``POST /talks/streams/{id}/ice``: one candidate, or end-of-candidates (no candidate, null or "")."""

    candidate: str | None = None
    sdp_mid: str | None = None
    sdp_m_line_index: int | None = None
    session_id: str | None = None

    @property
    def end_of_candidates(self) -> bool:
        return not self.candidate

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> IceCandidateRequest:
        f = _Fields(data, path)
        return cls(
            candidate=f.str_("candidate", max_len=MAX_CANDIDATE),
            sdp_mid=f.str_("sdpMid", max_len=64),
            sdp_m_line_index=f.int_("sdpMLineIndex", minimum=0, maximum=1024),
            session_id=_session_id(f),
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"session_id": self.session_id}
        if self.candidate is not None:
            body |= {
                "candidate": self.candidate,
                "sdpMid": self.sdp_mid,
                "sdpMLineIndex": self.sdp_m_line_index,
            }
        return _drop_none(body)


@attrs.frozen(kw_only=True)
class StatusResponse:
    status: str

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> StatusResponse:
        status = _Fields(data, path).str_("status", required=True)
        assert status is not None
        return cls(status=status)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status}


@attrs.frozen(kw_only=True)
class DeleteRequest:
    """``DELETE /talks/streams/{id}`` (D-ID sends a JSON body with the session id)."""

    session_id: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> DeleteRequest:
        return cls(session_id=_session_id(_Fields(data, path)))

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"session_id": self.session_id})


# -- talks --------------------------------------------------------------------------------------------------

PROVIDERS = ("microsoft", "elevenlabs", "azure-openai", "amazon")


@attrs.frozen(kw_only=True)
class Provider:
    """A text-to-speech provider and voice as D-ID names them (Microsoft's is D-ID's default)."""

    type: str
    voice_id: str | None = None
    voice_config: dict[str, Any] | None = None
    language: str | None = None
    model_id: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> Provider:
        f = _Fields(data, path)
        kind = f.enum("type", PROVIDERS, required=True)
        voice = f.str_("voice_id", required=kind != "elevenlabs", min_len=1, max_len=256)
        assert kind is not None
        return cls(
            type=kind,
            voice_id=voice,
            voice_config=f.json_object("voice_config"),
            language=f.str_("language", max_len=256),
            model_id=f.str_("model_id", max_len=256),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(attrs.asdict(self, recurse=False))


@attrs.frozen(kw_only=True)
class TextScript:
    """Text to speak, 3 to 40000 characters; SSML when `ssml`."""

    input: str
    ssml: bool = False
    provider: Provider | None = None
    type: ClassVar[str] = "text"

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> TextScript:
        f = _Fields(data, path)
        text = f.str_("input", required=True, min_len=3, max_len=MAX_TEXT)
        provider = f.obj("provider")
        assert text is not None
        return cls(
            input=text,
            ssml=bool(f.bool_("ssml")),
            provider=Provider.from_json(provider.data, provider.path) if provider else None,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "text", "input": self.input}
        if self.ssml:
            body["ssml"] = True
        if self.provider is not None:
            body["provider"] = self.provider.to_json()
        return body


@attrs.frozen(kw_only=True)
class AudioScript:
    """An audio file to play (mp3, wav, m4a, flac, mp4; at most 15 MB); the fetcher judges the URL."""

    audio_url: str
    type: ClassVar[str] = "audio"

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> AudioScript:
        url = _Fields(data, path).str_("audio_url", required=True, min_len=1, blank_ok=False)
        assert url is not None
        return cls(audio_url=url)

    def to_json(self) -> dict[str, Any]:
        return {"type": "audio", "audio_url": self.audio_url}


Script = TextScript | AudioScript


@attrs.frozen(kw_only=True)
class TalkConfig:
    stitch: bool | None = None
    fluent: bool | None = None
    pad_audio: float | None = None
    result_format: Literal["mp4", "mov"] | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> TalkConfig:
        f = _Fields(data, path)
        return cls(
            stitch=f.bool_("stitch"),
            fluent=f.bool_("fluent"),
            pad_audio=f.number("pad_audio", minimum=0, maximum=60),
            result_format=cast(Any, f.enum("result_format", ("mp4", "mov"))),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(attrs.asdict(self))


_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


@attrs.frozen(kw_only=True)
class Background:
    """A clips talk's background: a colour ``#RRGGBB``, or False for a transparent one."""

    color: str | Literal[False] | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> Background:
        f = _Fields(data, path)
        color = f.raw("color")
        if color is None or color is False:
            return cls(color=color)
        if not isinstance(color, str) or not _HEX_COLOR.fullmatch(color):
            raise ValidationError(f.at("color"), "must be a colour as #RRGGBB, or false")
        return cls(color=color)

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"color": self.color})


@attrs.frozen(kw_only=True)
class TalkRequest:
    """``POST /talks/streams/{id}`` (and ``/clips/streams/{id}``, which may add a `background`): only
    `script` is required."""

    script: Script
    config: TalkConfig | None = None
    background: Background | None = None
    driver_url: str | None = None
    user_data: str | None = None
    name: str | None = None
    audio_optimization: float | None = None
    metadata: Any = None
    session_id: str | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> TalkRequest:
        f = _Fields(data, path)
        script_fields = f.obj("script", required=True)
        assert script_fields is not None
        kind = script_fields.enum("type", ("text", "audio"), required=True)
        script: Script = (
            TextScript.from_json(script_fields.data, script_fields.path)
            if kind == "text"
            else AudioScript.from_json(script_fields.data, script_fields.path)
        )
        config = f.obj("config")
        background = f.obj("background")
        metadata = f.raw("metadata")
        return cls(
            script=script,
            config=TalkConfig.from_json(config.data, config.path) if config else None,
            background=Background.from_json(background.data, background.path) if background else None,
            driver_url=f.str_("driver_url", min_len=1),
            user_data=f.str_("user_data", min_len=1, max_len=1000, blank_ok=False),
            name=f.str_("name", max_len=1000),
            audio_optimization=f.number("audio_optimization", minimum=0, maximum=10),
            metadata=None if metadata is None else _plain_json(metadata, f.at("metadata")),
            session_id=_session_id(f),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "script": self.script.to_json(),
                "config": self.config.to_json() if self.config else None,
                "background": self.background.to_json() if self.background else None,
                "driver_url": self.driver_url,
                "user_data": self.user_data,
                "name": self.name,
                "audio_optimization": self.audio_optimization,
                "metadata": self.metadata,
                "session_id": self.session_id,
            }
        )


@attrs.frozen(kw_only=True)
class TalkResponse:
    """``200`` to a talk. Older servers sent only some of these fields (``talkId`` for ``video_id``)."""

    status: str = "started"
    session_id: str | None = None
    video_id: str | None = None
    duration: float | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> TalkResponse:
        f = _Fields(data, path)
        video_id = f.str_("video_id", max_len=MAX_ID)
        for legacy in ("talkId", "id"):  # what older servers called the talk's id
            if video_id is None:
                video_id = f.str_(legacy, max_len=MAX_ID)
        status = f.str_("status")
        return cls(
            status="started" if status is None else status,
            session_id=_session_id(f),
            video_id=video_id,
            duration=f.number("duration", minimum=0),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "session_id": self.session_id,
            "video_id": self.video_id,
            "duration": self.duration,
        }


DEFAULT_TALK_SOURCE = "bundled:astronaut"  # D-ID's default presenter stands in when no source_url is given


@attrs.frozen(kw_only=True)
class CreateTalkRequest:
    """``POST /talks`` (D-ID's asynchronous talks): only `script` is required; `source_url` defaults to the
    bundled portrait. The result is a file (``config.result_format``: mp4, or mov)."""

    script: Script
    source_url: str = DEFAULT_TALK_SOURCE
    config: TalkConfig | None = None
    user_data: str | None = None
    name: str | None = None
    webhook: str | None = None
    result_url: str | None = None

    @property
    def result_format(self) -> str:
        return (self.config.result_format if self.config else None) or "mp4"

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> CreateTalkRequest:
        talk = TalkRequest.from_json(data, path)  # the script, config and user data as a stream's talk has
        f = _Fields(data, path)
        source = f.str_("source_url", min_len=1, blank_ok=False)
        return cls(
            script=talk.script,
            source_url=source or DEFAULT_TALK_SOURCE,
            config=talk.config,
            user_data=talk.user_data,
            name=f.str_("name", min_len=1, max_len=MAX_ID, blank_ok=False),
            webhook=f.str_("webhook", min_len=1),
            result_url=f.str_("result_url", min_len=1),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "script": self.script.to_json(),
                "source_url": self.source_url,
                "config": self.config.to_json() if self.config else None,
                "user_data": self.user_data,
                "name": self.name,
                "webhook": self.webhook,
                "result_url": self.result_url,
            }
        )

    def as_stream(self) -> CreateStreamRequest:
        """The face this talk is rendered with, as a stream of the same source would have it."""
        stitch = self.config.stitch if self.config else None
        return CreateStreamRequest(
            source_url=self.source_url, config=StreamConfig(stitch=stitch) if stitch is not None else None
        )


@attrs.frozen(kw_only=True)
class TalkInfo:
    """``GET /talks/{id}`` (and each of ``GET /talks``): where an asynchronous talk stands."""

    id: str
    status: str
    result_url: str | None = None
    duration: float | None = None
    created_at: str | None = None
    error: ErrorBody | None = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> TalkInfo:
        f = _Fields(data, path)
        talk_id = f.str_("id", required=True, min_len=1, max_len=MAX_ID)
        status = f.str_("status", required=True, min_len=1, max_len=MAX_ID)
        error = f.obj("error")
        assert talk_id is not None and status is not None
        return cls(
            id=talk_id,
            status=status,
            result_url=f.str_("result_url"),
            duration=f.number("duration", minimum=0),
            created_at=f.str_("created_at", max_len=MAX_ID),
            error=ErrorBody.from_json(error.data, error.path) if error else None,
        )


@attrs.frozen(kw_only=True)
class StreamInterrupt:
    """What a client sends on the data channel to stop the talk playing (D-ID's client SDK):
    ``{"type": "stream/interrupt", "videoId": ..., "timestamp": <ms since the epoch>}``."""

    video_id: str
    timestamp: float | None = None
    type: ClassVar[str] = "stream/interrupt"

    @classmethod
    def from_json(cls, data: object, path: str = "message") -> StreamInterrupt:
        f = _Fields(data, path)
        f.enum("type", (cls.type,), required=True)
        video_id = f.str_("videoId", required=True, min_len=1, max_len=MAX_ID, blank_ok=False)
        assert video_id is not None
        return cls(video_id=video_id, timestamp=f.number("timestamp"))

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"type": self.type, "videoId": self.video_id, "timestamp": self.timestamp})


WEBSOCKET_TYPES = ("init-stream", "sdp", "ice", "stream-text", "stream-audio", "delete-stream")
MAX_CHUNK_TEXT = 10_000  # characters in one stream-text chunk
MAX_CHUNK_BYTES = 96_000  # bytes of PCM in one stream-audio chunk (3 s at 16 kHz; D-ID's demo sends 10 KB)


@attrs.frozen(kw_only=True)
class WebSocketMessage:
    """One message of D-ID's WebSocket API: ``{"type": ..., "payload": {...}}``."""

    type: str
    payload: Mapping[str, Any]

    @classmethod
    def from_json(cls, data: object, path: str = "message") -> WebSocketMessage:
        f = _Fields(data, path)
        kind = f.enum("type", WEBSOCKET_TYPES, required=True)
        payload = f.obj("payload", required=True)
        assert kind is not None and payload is not None
        return cls(type=kind, payload=payload.data)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "payload": dict(self.payload)}


def _stream_ref(f: _Fields) -> tuple[str | None, str | None]:
    return f.str_("stream_id", min_len=1, max_len=MAX_ID), _session_id(f)


def _chunk_json(
    script: dict[str, Any], index: int | None, stream_id: str | None, session_id: str | None
) -> dict[str, Any]:
    """A streamed talk's chunk as its payload: the script, its place, and the stream it is for."""
    return _drop_none({"script": script, "index": index, "stream_id": stream_id, "session_id": session_id})


@attrs.frozen(kw_only=True)
class StreamTextChunk:
    """``stream-text``: a piece of a talk's text, in order (`index`, from 0); one whose text is blank ends
    the talk's text (D-ID's demo sends ``"" + " "``). `ssml` and `provider` are the talk's, from its first
    chunk."""

    input: str
    ssml: bool = False
    provider: Provider | None = None
    index: int | None = None
    stream_id: str | None = None
    session_id: str | None = None

    @property
    def ends(self) -> bool:
        return not self.input.strip()

    @classmethod
    def from_json(cls, data: object, path: str = "payload") -> StreamTextChunk:
        f = _Fields(data, path)
        script = f.obj("script", required=True)
        assert script is not None
        script.enum("type", ("text",), required=True)
        text = script.raw("input")
        text = "" if text is None else _string(text, script.at("input"), max_len=MAX_CHUNK_TEXT)
        provider = script.obj("provider")
        stream_id, session_id = _stream_ref(f)
        return cls(
            input=text,
            ssml=bool(script.bool_("ssml")),
            provider=Provider.from_json(provider.data, provider.path) if provider else None,
            index=f.int_("index", minimum=0),
            stream_id=stream_id,
            session_id=session_id,
        )

    def to_json(self) -> dict[str, Any]:
        script: dict[str, Any] = {"type": "text", "input": self.input}
        if self.ssml:
            script["ssml"] = True
        if self.provider is not None:
            script["provider"] = self.provider.to_json()
        return _chunk_json(script, self.index, self.stream_id, self.session_id)


@attrs.frozen(kw_only=True)
class StreamAudioChunk:
    """``stream-audio``: a piece of a talk's sound as 16-bit little-endian mono PCM (16 kHz unless
    `sample_rate` says otherwise), given as D-ID's demo sends it (a list of byte values) or as base64 text;
    an empty one ends the talk."""

    data: bytes
    sample_rate: int = 16_000
    index: int | None = None
    stream_id: str | None = None
    session_id: str | None = None

    @property
    def ends(self) -> bool:
        return not self.data

    @classmethod
    def from_json(cls, data: object, path: str = "payload") -> StreamAudioChunk:
        f = _Fields(data, path)
        script = f.obj("script", required=True)
        assert script is not None
        script.enum("type", ("audio",), required=True)
        raw = script.raw("input")
        where = script.at("input")
        if raw is None:
            pcm = b""
        elif isinstance(raw, str):
            if len(raw) > MAX_CHUNK_BYTES * 4 // 3 + 4:
                raise ValidationError(where, f"more than {MAX_CHUNK_BYTES} bytes")
            try:
                pcm = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationError(where, "must be base64 text or a list of byte values") from None
        elif isinstance(raw, list):
            if len(raw) > MAX_CHUNK_BYTES:
                raise ValidationError(where, f"more than {MAX_CHUNK_BYTES} bytes")
            if not all(type(b) is int and 0 <= b <= 255 for b in raw):
                raise ValidationError(where, "must be byte values, whole numbers from 0 to 255")
            pcm = bytes(raw)
        else:
            raise ValidationError(where, "must be base64 text or a list of byte values")
        if len(pcm) > MAX_CHUNK_BYTES:
            raise ValidationError(where, f"more than {MAX_CHUNK_BYTES} bytes")
        rate = script.int_("sample_rate", minimum=8000, maximum=48000)
        stream_id, session_id = _stream_ref(f)
        return cls(
            data=pcm,
            sample_rate=16_000 if rate is None else rate,
            index=f.int_("index", minimum=0),
            stream_id=stream_id,
            session_id=session_id,
        )

    def to_json(self) -> dict[str, Any]:
        encoded = base64.b64encode(self.data).decode()
        script = {"type": "audio", "input": encoded, "sample_rate": self.sample_rate}
        return _chunk_json(script, self.index, self.stream_id, self.session_id)


@attrs.frozen(kw_only=True)
class ErrorBody:
    """D-ID's error body."""

    kind: str
    description: str
    details: Any = None

    @classmethod
    def from_json(cls, data: object, path: str = "body") -> ErrorBody:
        f = _Fields(data, path)
        kind = f.str_("kind", required=True, max_len=256)
        description = f.str_("description", required=True, max_len=MAX_TEXT)
        details = f.raw("details")
        assert kind is not None and description is not None
        return cls(
            kind=kind,
            description=description,
            details=None if details is None else _plain_json(details, f.at("details")),
        )

    def to_json(self) -> dict[str, Any]:
        return _drop_none({"kind": self.kind, "description": self.description, "details": self.details})
