"""The avatar on its own: portrait checks, face features, animation, speech timing, URL decisions."""

from __future__ import annotations

import ipaddress
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from talkstream.avatar.animator import Animator
from talkstream.avatar.fetch import Fetcher, FetchPolicy, _legacy_ipv4, address_allowed
from talkstream.avatar.landmarks import find_face
from talkstream.avatar.portrait import Box, bundled_portrait_bytes, image_size, load_portrait
from talkstream.avatar.speech import (
    decode_audio,
    default_tts,
    mouth_track,
    sniff_audio_format,
    speech_from_pcm,
    ssml_segments,
    viseme_openness,
)
from talkstream.avatar.studio import motion_for
from talkstream.engine.errors import BadRequestError, UnsupportedMediaTypeError
from talkstream.engine.ports import AUDIO_RATE as RATE


@pytest.fixture(scope="module")
def portrait():  # type: ignore[no-untyped-def]
    return load_portrait(bundled_portrait_bytes())


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def test_bundled_portrait_has_a_face_eyes_and_mouth_where_they_are(portrait) -> None:  # type: ignore[no-untyped-def]
    face = portrait.face
    assert 150 < face.x < 210 and 40 < face.y < 100 and 70 < face.w < 130
    left, right = portrait.eyes
    assert left.x < right.x and face.y < left.y < face.y + face.h / 2
    mouth = portrait.mouth
    # The mouth of the astronaut portrait: lips between y=138 and 152, centred near x=223.
    assert 136 <= mouth.y + mouth.h / 2 <= 152
    assert abs(mouth.x + mouth.w / 2 - 223) < 12
    # One cached portrait serves every stream's animator: nothing may paint on it.
    assert not portrait.image.flags.writeable


def test_faces_are_found_on_many_threads_at_once(portrait) -> None:  # type: ignore[no-untyped-def]
    """Concurrent creates detect faces on the executor's threads at the same time. One OpenCV cascade shared
    between threads is not safe (CI saw ``vector::_M_range_check`` from ``detectMultiScale``)."""
    data = bundled_portrait_bytes()
    start = threading.Barrier(6)

    def detect(_: int) -> tuple[Box, tuple[Box, Box], Box]:
        start.wait()  # all six threads inside OpenCV together
        found = load_portrait(data)
        return found.face, found.eyes, found.mouth

    for _ in range(5):
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(detect, range(6)))
            start.reset()
        assert answers == [(portrait.face, portrait.eyes, portrait.mouth)] * 6


def test_image_size_reads_headers_only() -> None:
    assert image_size(png_header(640, 480)) == ("png", 640, 480)
    with pytest.raises(UnsupportedMediaTypeError):
        image_size(b"GIF89a....")
    with pytest.raises(UnsupportedMediaTypeError):
        image_size(b"%PDF-1.4")


def test_pixel_cap_checked_before_decoding() -> None:
    huge = png_header(100_000, 100_000) + b"\x00" * 64  # would be 30 GB decoded
    with pytest.raises(BadRequestError, match="pixels"):
        load_portrait(huge)


@pytest.mark.parametrize("side", [0, 1, 15])
def test_a_face_box_too_small_to_hold_a_face_is_a_400(side: int) -> None:
    """D-ID's schema allows a face of size 0; the mesh divided by it (a 500 found by schemathesis)."""
    with pytest.raises(BadRequestError, match="too small"):
        load_portrait(bundled_portrait_bytes(), face=Box(100, 100, side, side))
    find_face(np.zeros((64, 64, 3), np.uint8), hint=(10, 10, side, side))  # no longer raises


def test_no_face_is_a_clear_400_unless_told_where() -> None:
    blank = cv2.imencode(".png", np.full((200, 200, 3), 180, np.uint8))[1].tobytes()
    with pytest.raises(BadRequestError, match="no face"):
        load_portrait(blank)
    told = load_portrait(blank, face=Box(50, 50, 100, 100))
    assert told.face == Box(50, 50, 100, 100)


def test_a_face_only_the_cascades_placed_still_talks() -> None:
    """No mesh (a face the caller placed, or the cascades found): the rig is drawn from the boxes."""
    photo = np.full((240, 240, 3), 170, np.uint8)
    cv2.ellipse(photo, (120, 178), (24, 6), 0, 0, 360, (90, 90, 170), -1)  # something like lips
    portrait = load_portrait(cv2.imencode(".png", photo)[1].tobytes(), face=Box(60, 60, 120, 120))
    assert portrait.landmarks is None
    face = Animator(portrait, resolution=240, motion=0.5)
    assert not face.rig.from_mesh
    still = face.still()
    assert np.array_equal(face.frame(0.0), still)
    opened = np.argwhere(np.abs(face.frame(0.8).astype(np.int16)[:240] - still[:240]) > 6)
    assert len(opened) > 30
    (y0, x0), (y1, x1) = opened.min(axis=0), opened.max(axis=0)
    mouth = portrait.mouth
    assert mouth.x - mouth.w <= x0 and x1 <= mouth.x + 2 * mouth.w and y0 >= mouth.y - mouth.h
    assert y1 <= portrait.face.y + portrait.face.h * 1.5  # the chin and the top of the neck, no further
    assert face.frame(0.3, 1.0, blink=1.0).shape == still.shape


def test_still_frame_is_the_photo_and_only_the_face_moves(portrait) -> None:  # type: ignore[no-untyped-def]
    animator = Animator(portrait, resolution=512)
    h, w = animator.height, animator.width
    assert (w, h) == (512, 512)
    still = animator.still()
    assert still.shape == (h * 3 // 2, w)
    assert np.array_equal(animator.frame(0.0, blink=0.0), still)
    open_mouth = animator.frame(1.0, blink=0.0).astype(np.int16)
    changed = np.argwhere(np.abs(open_mouth[:h] - still[:h]) > 3)
    assert len(changed) > 200, "the mouth did not open"
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    face = portrait.face
    assert face.x - 10 <= x0 and x1 <= face.x + face.w + 10, "pixels moved outside the face"
    # Below the nose, down to the chin and the top of the neck it drops over (a third of a face below it).
    assert face.y + face.h / 2 <= y0 and y1 <= portrait.landmarks[152][1] + face.h / 3
    blink = np.argwhere(np.abs(animator.frame(0.0, blink=1.0).astype(np.int16)[:h] - still[:h]) > 3)
    assert len(blink) > 20 and blink[:, 0].max() < face.y + face.h / 2, "the blink is not in the eyes"


def test_the_face_blinks_on_its_own_every_three_to_five_seconds(portrait) -> None:  # type: ignore[no-untyped-def]
    animator = Animator(portrait, resolution=256, motion=0.0)
    h = animator.height
    still = animator.still()
    lids = np.array([animator.blink_at(k * 0.04) for k in range(25 * 60)])
    starts = np.flatnonzero((lids > 0) & (np.concatenate([[0.0], lids[:-1]]) == 0))
    gaps = np.diff(starts) / 25
    assert len(starts) >= 11 and gaps.min() >= 3.0 - 0.04 and gaps.max() <= 5.0 + 0.04, gaps
    assert all(lids[s : s + 4].tolist() == [0.35, 1.0, 1.0, 0.5] for s in starts)
    shut = starts[0] + 1
    drawn = animator.frame(0.0, shut * 0.04).astype(np.int16)
    assert np.array_equal(drawn, animator.frame(0.0, blink=1.0))  # what the schedule asks for is drawn
    assert np.abs(drawn[:h] - still[:h]).max() > 3
    assert np.array_equal(animator.frame(0.0), still), "at rest (no time given) the face is the photo"


def test_openness_is_monotonic_in_the_mouth_region(portrait) -> None:  # type: ignore[no-untyped-def]
    animator = Animator(portrait, resolution=512)
    still = animator.still().astype(np.int16)
    amounts = [np.abs(animator.frame(o).astype(np.int16) - still).sum() for o in (0.2, 0.5, 1.0)]
    assert amounts[0] < amounts[1] < amounts[2]


@pytest.mark.parametrize(("resolution", "stitch"), [(256, True), (512, False), (1280, True), (150, False)])
def test_sizes_are_even_and_bounded(portrait, resolution: int, stitch: bool) -> None:  # type: ignore[no-untyped-def]
    animator = Animator(portrait, resolution=resolution, stitch=stitch)
    assert max(animator.width, animator.height) <= resolution
    assert animator.width % 2 == 0 and animator.height % 2 == 0
    assert animator.frame(0.7, blink=0.5).shape == (animator.height * 3 // 2, animator.width)


def test_mouth_follows_loudness_frame_by_frame() -> None:
    t = np.arange(RATE) / RATE
    loud = (np.sin(2 * np.pi * 200 * t) * 16000).astype(np.int16)
    pcm = np.concatenate([loud[: RATE // 2], np.zeros(RATE // 2, np.int16), loud[: RATE // 2]])
    track = mouth_track(pcm)
    assert len(track) == 38  # 1.5 s at 25 frames per second, the last one partial
    assert track[5:12].min() > 0.6, "open while loud"
    assert track[18:24].max() < 0.05, "closed in silence"
    assert track[30:36].min() > 0.6
    assert mouth_track(np.zeros(RATE, np.int16)).max() == 0.0


@pytest.mark.parametrize("onset_ms", [0, 7, 19, 21, 33, 39, 40, 55, 79])
def test_the_mouth_opens_on_the_frame_nearest_the_sound(onset_ms: int) -> None:
    """Frame k is shown at k * 40 ms: the first open frame is within half a frame of the sound's onset."""
    t = np.arange(RATE // 2) / RATE
    burst = (np.sin(2 * np.pi * 200 * t) * 16000).astype(np.int16)
    pcm = np.concatenate([np.zeros(RATE // 2 + onset_ms * RATE // 1000, np.int16), burst])
    track = mouth_track(pcm)
    first_open = int(np.argmax(track > 0.3))
    onset = 0.5 + onset_ms / 1000
    assert abs(first_open * 0.04 - onset) <= 0.0201, (first_open, track[10:16])


def test_pad_audio_adds_silence() -> None:
    speech = speech_from_pcm(np.ones(RATE, np.int16) * 5000, pad_seconds=2.0)
    assert speech.duration == pytest.approx(3.0)
    assert speech.frames == 75


def test_ssml_breaks_and_stripped_tags() -> None:
    assert ssml_segments('<speak>Hello <emphasis>there</emphasis><break time="500ms"/>you</speak>') == [
        "Hello  there",
        0.5,
        "you",
    ]
    assert ssml_segments('a<break time="2s"/>b<break strength="strong"/>c<break time="99s"/>') == [
        "a",
        2.0,
        "b",
        0.75,
        "c",
        10.0,
    ]


def test_audio_formats_are_sniffed_and_whitelisted() -> None:
    assert sniff_audio_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_audio_format(b"fLaC\x00") == "flac"
    assert sniff_audio_format(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert sniff_audio_format(b"ID3\x04\x00") == "mp3"
    for junk in (b"OggS\x00\x02", b"<html>", b"\x1a\x45\xdf\xa3"):
        with pytest.raises(UnsupportedMediaTypeError):
            sniff_audio_format(junk)
    with pytest.raises(UnsupportedMediaTypeError):
        decode_audio(b"RIFF\x00\x00\x00\x00WAVEgarbage that is not a wav file at all")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 form of 169.254.169.254
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo around 127.0.0.1 (client obfuscated)
        ("1.1.1.1", True),
        ("93.184.215.14", True),
        ("255.255.255.255", False),  # broadcast
        ("240.0.0.1", False),  # reserved
        ("198.18.0.1", False),  # benchmarking
        ("192.0.2.1", False),  # TEST-NET-1
        ("100.127.255.254", False),  # the top of shared address space
        ("169.254.0.1", False),  # link-local
        ("127.255.255.254", False),
        ("::", False),
        ("ff02::1", False),  # multicast
        ("2001:db8::1", False),  # documentation
        ("64:ff9b::808:808", True),  # NAT64 form of 8.8.8.8
        ("::ffff:169.254.169.254", False),
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 around 10.0.0.1
        ("2002:808:808::1", True),  # 6to4 around 8.8.8.8
    ],
)
def test_address_decisions(address: str, allowed: bool) -> None:
    assert address_allowed(ipaddress.ip_address(address)) is allowed


def test_allow_list_admits_loopback_for_local_use() -> None:
    local = FetchPolicy.local()
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), local.allow_networks)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), local.allow_networks)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "ftp://example.com/a.png",
        "https://user:pw@example.com/a.png",
        "https://example.com:22/a.png",
        "http://127.0.0.1/a.png",
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data",
        "https://",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433/a.png",
        "http://0177.0.0.1/a.png",
        "http://0x7f.0.0.1/a.png",
        "http://127.1/a.png",
        "http://0/a.png",
        "http://0x7f000001./a.png",
    ],
)
def test_url_forms_refused_before_any_connection(url: str) -> None:
    with pytest.raises(BadRequestError):
        Fetcher().check_url(url)


@pytest.mark.parametrize(
    ("host", "meaning"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("134744072", "8.8.8.8"),
        ("example.com", None),
        ("cafe.be", None),
        ("1e100.net", None),
        ("deadbeef", None),
        ("127.0.0.1.nip.io", None),
    ],
)
def test_legacy_ipv4_forms_are_read_as_browsers_read_them(host: str, meaning: str | None) -> None:
    decoded = _legacy_ipv4(host)
    assert (str(decoded) if decoded else None) == meaning


def test_a_public_address_in_a_legacy_form_is_refused_with_its_dotted_form() -> None:
    with pytest.raises(BadRequestError, match=r"write it as 8\.8\.8\.8"):
        Fetcher().check_url("http://134744072/a.png")
    with pytest.raises(BadRequestError, match="not allowed"):
        Fetcher().check_url("http://2130706433/a.png")


def test_head_motion_moves_only_the_head_region(portrait) -> None:  # type: ignore[no-untyped-def]
    lively = Animator(portrait, resolution=512, motion=1.0)
    h = lively.height
    still = lively.still().astype(np.int16)
    moved = np.argwhere(np.abs(lively.frame(0.0, 1.3, blink=0.0).astype(np.int16)[:h] - still[:h]) > 4)
    assert len(moved) > 500, "the head did not move"
    face = portrait.face
    (y0, x0), (y1, x1) = moved.min(axis=0), moved.max(axis=0)
    assert face.x - face.w * 0.5 <= x0 and x1 <= face.x + face.w * 1.5
    assert face.y - face.h * 0.6 <= y0 and y1 <= face.y + face.h * 1.4
    stiff = Animator(portrait, resolution=512, motion=0.0)
    assert np.array_equal(stiff.frame(0.0, 1.3, blink=0.0), stiff.still())
    assert lively.head_pose(0.0) != lively.head_pose(2.0)


@pytest.mark.parametrize(
    ("driver", "factor", "expected"),
    [
        (None, None, 0.6),
        ("bank://lively", None, 1.0),
        ("bank://lively/", 0.5, 0.5),
        ("bank://stiff", None, 0.0),
    ],
)
def test_driver_presets(driver: str | None, factor: float | None, expected: float) -> None:
    assert motion_for(driver, factor) == pytest.approx(expected)


@pytest.mark.parametrize("driver", ["bank://nonsense", "https://example.com/driver.mp4", "s3://bucket/d.mp4"])
def test_unknown_drivers_are_refused(driver: str) -> None:
    with pytest.raises(BadRequestError, match="invalid driver"):
        motion_for(driver, None)


def test_visemes() -> None:
    assert viseme_openness("m") == viseme_openness("b") == viseme_openness("_:") == 0.0
    assert viseme_openness("'aI") == 1.0 > viseme_openness("@") > viseme_openness("i") > viseme_openness("f")


def test_phonemes_close_the_lips_however_loud() -> None:
    loud = (np.sin(np.arange(RATE) / 5.0) * 20000).astype(np.int16)  # one loud second
    open_all = mouth_track(loud, [(0.0, "A:")])
    assert open_all[3:22].min() > 0.8
    # An m from 0.4 s to 0.6 s: the mouth closes there though the sound stays loud.
    shaped = mouth_track(loud, [(0.0, "A:"), (0.4, "m"), (0.6, "A:")])
    assert shaped[12:15].max() < 0.1
    assert shaped[3:8].min() > 0.8 and shaped[18:22].min() > 0.8


def test_espeak_reports_phonemes_on_the_audio_timeline() -> None:
    tts = default_tts()
    if tts is None:
        pytest.skip("the tts extra is not installed")
    synthesis = tts.synthesize('Mama, <break time="300ms"/> a bob.', ssml=True)
    duration = len(synthesis.pcm) / RATE
    times = [t for t, _ in synthesis.phonemes]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= duration
    names = [p.strip("'") for _, p in synthesis.phonemes]
    assert names.count("m") >= 2 and "b" in names
    track = mouth_track(synthesis.pcm, synthesis.phonemes)
    m_frames = [round(t * 25) for t, p in synthesis.phonemes if p.strip("'") == "m"]
    vowels = [round(t * 25) + 1 for t, p in synthesis.phonemes if viseme_openness(p) >= 0.75]
    assert min(track[f] for f in vowels if f < len(track)) >= 0.0
    assert max(track[f] for f in vowels if f < len(track)) > max(track[f] for f in m_frames) + 0.2


def test_frames_drawn_into_one_array_allocate_nothing_the_size_of_the_picture(portrait) -> None:  # type: ignore[no-untyped-def]
    """At 25 frames a second per stream, picture-sized temporaries churned the allocator (RSS grew
    under churn). Drawing into `out` reuses per-thread work buffers once they exist."""
    import tracemalloc

    animator = Animator(portrait, resolution=512, motion=1.0)
    out = animator.still()
    cases = ((0.8, 0.0, 1.3), (0.3, 1.0, 2.1), (1.0, 0.5, 0.4))
    expected = [animator.frame(o, at, blink=b) for o, b, at in cases]
    tracemalloc.start()
    try:
        for (o, b, at), want in zip(
            ((0.8, 0.0, 1.3), (0.3, 1.0, 2.1), (1.0, 0.5, 0.4)), expected, strict=True
        ):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            assert animator.frame(o, at, blink=b, out=out) is out
            assert tracemalloc.get_traced_memory()[1] - base < 64 * 1024  # one frame is 384 KiB
            assert np.array_equal(out, want)
    finally:
        tracemalloc.stop()


async def test_streams_of_one_photo_share_its_animator() -> None:
    from talkstream.avatar.studio import AvatarStudio
    from talkstream.engine.messages import CreateStreamRequest

    studio = AvatarStudio(tts=None)
    try:
        first = await studio.face(CreateStreamRequest.from_json({"source_url": "bundled:astronaut"}))
        again = await studio.face(CreateStreamRequest.from_json({"source_url": "bundled:astronaut"}))
        smaller = await studio.face(
            CreateStreamRequest.from_json({"source_url": "bundled:astronaut", "output_resolution": 256})
        )
        boxed = await studio.face(
            CreateStreamRequest.from_json(
                {"source_url": "bundled:astronaut", "face": {"top_left": [150, 50], "size": 120}}
            )
        )
    finally:
        await studio.aclose()
    assert again is first and smaller is not first and smaller.width == 256
    assert boxed is not first  # a face box given with the request is that request's own


def test_fetch_errors_are_named_by_their_aiohttp_class() -> None:
    import aiohttp

    from talkstream.avatar.fetch import _client_error_reason

    assert _client_error_reason(aiohttp.ServerDisconnectedError()) == "the server closed the connection"
    assert _client_error_reason(aiohttp.InvalidUrlClientError("x")) == "the url is not valid"

    class Wrapped(aiohttp.ServerDisconnectedError):
        """A subclass still reads as what it is (class names were compared as strings before)."""

    assert _client_error_reason(Wrapped()) == "the server closed the connection"
    assert _client_error_reason(aiohttp.ClientPayloadError()) == "ClientPayloadError"
