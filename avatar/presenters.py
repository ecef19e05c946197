"""The presenters a clips stream may ask for (``/clips/streams`` with a `presenter_id`): the bundled portrait
under a stable id, the ids D-ID's own demo sends (so a clone of it plays unchanged), and photos an operator
adds; and the drivers, which here name the head-motion presets.

What it must never do: read a photo (the studio does, through its usual checks), or answer for a
presenter it does not hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from talkstream.engine.errors import BadRequestError, NotFoundError
from talkstream.engine.messages import CreateClipStreamRequest, CreateStreamRequest, Presenter

from .studio import MOTION_PRESETS

__all__ = ["BUNDLED_PRESENTER", "DEMO_PRESENTER_IDS", "PresenterBook"]

BUNDLED_PRESENTER = "talkstream-astronaut"
DEFAULT_DRIVER = "natural"
#: Presenter and driver ids that D-ID's live-streaming demo has sent by default (its current api.json
#: and older clones), played here by the bundled portrait. D-ID documents no error for an unknown
#: presenter; this server answers 404 NotFoundError.
DEMO_PRESENTER_IDS = ("v2_public_alex@qcvo4gupoy", "rian-lZC6MmWfC1", "amy-jcwCkr1grs")
DEMO_DRIVER_IDS = ("e3nbserss8", "mXra4jY38i", "uM00QMwJ9x")


@attrs.frozen
class _Entry:
    presenter: Presenter
    source_url: str


class PresenterBook:
    """Presenters by id. `photos`: presenter id -> a photo inside the server's media folder."""

    def __init__(self, photos: Mapping[str, Path] | None = None) -> None:
        self._entries: dict[str, _Entry] = {}
        bundled = _Entry(
            Presenter(
                presenter_id=BUNDLED_PRESENTER,
                driver_id=DEFAULT_DRIVER,
                name="Astronaut (bundled)",
                gender="female",
            ),
            "bundled:astronaut",
        )
        self._entries[BUNDLED_PRESENTER] = bundled
        for alias in DEMO_PRESENTER_IDS:
            self._entries[alias] = attrs.evolve(
                bundled, presenter=attrs.evolve(bundled.presenter, presenter_id=alias)
            )
        for presenter_id, path in (photos or {}).items():
            if not presenter_id or presenter_id in self._entries:
                raise ValueError(f"presenter id {presenter_id!r} is empty or already taken")
            self._entries[presenter_id] = _Entry(
                Presenter(presenter_id=presenter_id, driver_id=DEFAULT_DRIVER, name=Path(path).stem),
                Path(path).resolve().as_uri(),
            )

    def all(self) -> tuple[Presenter, ...]:
        return tuple(entry.presenter for entry in self._entries.values())

    def get(self, presenter_id: str) -> Presenter:
        return self._entry(presenter_id).presenter

    def stream_request(self, request: CreateClipStreamRequest) -> CreateStreamRequest:
        """The ``/talks/streams`` request that makes this clips stream: the presenter's photo, its driver's
        head motion."""
        entry = self._entry(request.presenter_id)
        driver = request.driver_id or entry.presenter.driver_id
        preset = DEFAULT_DRIVER if driver in DEMO_DRIVER_IDS else driver
        if preset not in MOTION_PRESETS:
            raise BadRequestError(
                f"invalid driver: this server's drivers are {', '.join(_drivers())}",
            )
        return attrs.evolve(request.as_stream(entry.source_url), driver_url=f"bank://{preset}")

    def _entry(self, presenter_id: str) -> _Entry:
        entry = self._entries.get(presenter_id)
        if entry is None:
            raise NotFoundError(
                f"no presenter {presenter_id!r} on this server (GET /clips/presenters lists them)"
            )
        return entry


def _drivers() -> Iterable[str]:
    return (*MOTION_PRESETS, *DEMO_DRIVER_IDS)
