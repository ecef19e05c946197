"""Clips streams' bodies and the presenter book: what parses, what is refused, how a presenter becomes a
stream."""

from __future__ import annotations

import pytest

from talkstream.avatar.presenters import BUNDLED_PRESENTER, DEMO_PRESENTER_IDS, PresenterBook
from talkstream.engine.errors import BadRequestError, NotFoundError, ValidationError
from talkstream.engine.messages import (
    Background,
    CreateClipStreamRequest,
    PresentersResponse,
    TalkRequest,
)


def test_a_clips_create_needs_a_presenter_and_keeps_what_it_knows() -> None:
    body = {"presenter_id": "p1", "driver_id": "d1", "stream_warmup": True, "compatibility_mode": "off"}
    parsed = CreateClipStreamRequest.from_json(body)
    assert parsed.to_json() == body
    for bad in ({"driver_id": "d1"}, {"presenter_id": "   "}, {"presenter_id": 7}):
        with pytest.raises(ValidationError) as caught:
            CreateClipStreamRequest.from_json(bad)
        assert caught.value.path == "body.presenter_id"
    stream = parsed.as_stream("bundled:astronaut")
    assert (stream.source_url, stream.compatibility_mode, stream.stream_warmup) == (
        "bundled:astronaut",
        "off",
        True,
    )


@pytest.mark.parametrize("color", ["#FFFFFF", "#47ffff", False])
def test_backgrounds_are_hex_colours_or_false(color: object) -> None:
    assert Background.from_json({"color": color}).color == color


@pytest.mark.parametrize("color", ["white", "#FFF", "#FFFFFF00", 7, True, "#GGGGGG"])
def test_other_backgrounds_are_refused_naming_the_field(color: object) -> None:
    body = {"script": {"type": "text", "input": "Hi there"}, "background": {"color": color}}
    with pytest.raises(ValidationError) as caught:
        TalkRequest.from_json(body)
    assert caught.value.path == "body.background.color"


def test_a_clips_talk_keeps_its_background() -> None:
    body = {
        "script": {"type": "text", "input": "Hi there"},
        "background": {"color": "#FFFFFF"},
        "session_id": "s",
    }
    assert TalkRequest.from_json(body).to_json()["background"] == {"color": "#FFFFFF"}


def test_the_book_offers_the_bundled_presenter_and_the_demos_ids() -> None:
    book = PresenterBook()
    ids = [p.presenter_id for p in book.all()]
    assert ids[0] == BUNDLED_PRESENTER and set(DEMO_PRESENTER_IDS) <= set(ids)
    listed = PresentersResponse(presenters=book.all())
    assert PresentersResponse.from_json(listed.to_json()) == listed
    stream = book.stream_request(
        CreateClipStreamRequest(presenter_id=DEMO_PRESENTER_IDS[0], driver_id="e3nbserss8")
    )
    assert (stream.source_url, stream.driver_url) == ("bundled:astronaut", "bank://natural")
    lively = book.stream_request(CreateClipStreamRequest(presenter_id=BUNDLED_PRESENTER, driver_id="lively"))
    assert lively.driver_url == "bank://lively"
    with pytest.raises(NotFoundError, match="no presenter"):
        book.get("nobody")
    with pytest.raises(BadRequestError, match="invalid driver"):
        book.stream_request(CreateClipStreamRequest(presenter_id=BUNDLED_PRESENTER, driver_id="nope"))


def test_an_operators_presenter_is_its_photo_and_cannot_take_a_used_id(tmp_path: object) -> None:
    from pathlib import Path

    photo = Path(str(tmp_path)) / "me.jpg"
    book = PresenterBook({"me": photo})
    assert book.get("me").name == "me"
    assert (
        book.stream_request(CreateClipStreamRequest(presenter_id="me")).source_url == photo.resolve().as_uri()
    )
    with pytest.raises(ValueError, match="already taken"):
        PresenterBook({BUNDLED_PRESENTER: photo})
