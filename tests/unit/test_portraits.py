"""The face on a set of real portraits (tests/portraits: licences and hand-placed lip points in
portraits.json): the mesh finds each face, its lip landmarks sit on the lips a person marked, an open mouth
moves only the lips and jaw, rounded and spread mouths differ in shape, and the face at rest is the photo."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from talkstream.avatar.animator import Animator
from talkstream.avatar.portrait import Box, Portrait, load_portrait
from talkstream.avatar.rig import LOWER_INNER_LIP, LOWER_OUTER_LIP, UPPER_INNER_LIP, UPPER_OUTER_LIP
from talkstream.engine.ports import Mouth

HERE = Path(__file__).resolve().parents[1] / "portraits"
PORTRAITS: list[dict[str, Any]] = json.loads((HERE / "portraits.json").read_text())
NAMES = [entry["file"] for entry in PORTRAITS]
# The mesh's eye corners and lids, and the brows end to end.
EYES_AND_BROWS: tuple[int, ...] = (33, 133, 263, 362, 159, 145, 386, 374, 46, 53, 52, 65, 55, 70, 63, 105)
EYES_AND_BROWS += (66, 107, 285, 295, 282, 283, 276, 300, 293, 334, 296, 336)
BY_NAME = {entry["file"]: entry for entry in PORTRAITS}


def test_the_set_is_varied_and_licensed() -> None:
    assert len(PORTRAITS) >= 8
    traits = {trait for entry in PORTRAITS for trait in entry["traits"]}
    wanted = {"old", "young", "glasses", "beard", "smile", "neutral", "turned", "small-face", "dark-skin"}
    assert wanted <= traits, wanted - traits
    readme = (HERE / "README.md").read_text()
    for entry in PORTRAITS:
        assert entry["licence"] and entry["source"], entry["file"]
        assert entry["file"] in readme, f"{entry['file']} has no line in the README"


@functools.cache
def portrait(name: str) -> Portrait:
    entry = BY_NAME[name]
    hint = Box(*entry["face_box"]) if "Two faces" in entry.get("note", "") else None
    return load_portrait((HERE / name).read_bytes(), face=hint)


@functools.cache
def animator(name: str) -> Animator:
    found = portrait(name)
    height, width = found.image.shape[:2]
    # The photo's own size (even sides): frame pixels are the photo's, so the hand-placed points apply.
    return Animator(found, resolution=max(width, height) // 2 * 2, motion=0.0)


def luma(animator: Animator, frame: np.ndarray) -> np.ndarray:
    return frame[: animator.height].astype(np.int16)


def point(entry: dict[str, Any], key: str) -> np.ndarray:
    return np.array(entry[key], np.float64)


def mouth_width(entry: dict[str, Any]) -> float:
    return float(np.linalg.norm(point(entry, "mouth_right") - point(entry, "mouth_left")))


@pytest.mark.parametrize("name", NAMES)
def test_the_lip_landmarks_sit_on_the_lips_a_person_marked(name: str) -> None:
    entry = BY_NAME[name]
    found = portrait(name)
    assert found.landmarks is not None, "the face mesh did not find the face"
    marks = found.landmarks.astype(np.float64)
    tolerance = max(3.0, 0.15 * mouth_width(entry))
    assert np.linalg.norm(marks[61] - point(entry, "mouth_left")) < tolerance
    assert np.linalg.norm(marks[291] - point(entry, "mouth_right")) < tolerance
    # The hand-placed points sit in the middle of each lip's red: between the mesh's outer and inner lip
    # lines where they cross that point's column (on a turned face the lips' middle is not the midline's).
    slack = 1.5
    upper, lower = point(entry, "upper_lip"), point(entry, "lower_lip")
    assert (
        line_y(marks, UPPER_OUTER_LIP, upper[0]) - slack
        <= upper[1]
        <= line_y(marks, UPPER_INNER_LIP, upper[0]) + slack
    )
    assert (
        line_y(marks, LOWER_INNER_LIP, lower[0]) - slack
        <= lower[1]
        <= line_y(marks, LOWER_OUTER_LIP, lower[0]) + slack
    )


def line_y(marks: np.ndarray, indices: tuple[int, ...], x: float) -> float:
    line = marks[list(indices)]
    order = np.argsort(line[:, 0])
    return float(np.interp(x, line[order, 0], line[order, 1]))


@pytest.mark.parametrize("name", NAMES)
def test_an_open_mouth_moves_the_lips_and_jaw_only(name: str) -> None:
    entry = BY_NAME[name]
    face = animator(name)
    still = luma(face, face.still())
    opened = luma(face, face.frame(Mouth(0.8)))
    changed = np.argwhere(np.abs(opened - still) > 6)
    assert len(changed) > 30, "nothing moved"
    (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
    bx, by, bw, bh = entry["face_box"]
    width = mouth_width(entry)
    assert bx - 0.1 * bw <= x0 and x1 <= bx + 1.1 * bw, "pixels changed beside the face"
    assert y0 >= point(entry, "upper_lip")[1] - 0.6 * width, "pixels changed above the mouth"
    assert y1 <= by + bh * 1.45, "pixels changed below the neck's top"
    # The real lower lip moved: where a person marked it, the picture is different now.
    lx, ly = np.round(point(entry, "lower_lip")).astype(int)
    window = (slice(ly - 2, ly + 3), slice(lx - 2, lx + 3))
    assert np.abs(opened[window] - still[window]).mean() > 10, "the marked lower lip did not move"


def opening_shape(entry: dict[str, Any], face: Animator, mouth: Mouth) -> float:
    """Width over height of the mouth's opening: of what became darker around the marked lips, and dark
    (under half the window's median: the throat, not lips or a beard shifted), the widest row's count over
    the tallest column's."""
    width = mouth_width(entry)
    (lx, _), (rx, _) = point(entry, "mouth_left"), point(entry, "mouth_right")
    top = round(point(entry, "upper_lip")[1] - 0.3 * width)
    bottom = round(point(entry, "lower_lip")[1] + 0.5 * width)
    window = (slice(max(top, 0), bottom), slice(max(round(lx - 0.3 * width), 0), round(rx + 0.3 * width)))
    before, after = luma(face, face.still())[window], luma(face, face.frame(mouth))[window]
    darker = (before - after > 30) & (after < 0.5 * np.median(before))
    across, down = darker.sum(axis=1).max(), darker.sum(axis=0).max()
    assert across and down, "the mouth did not open"
    return float(across / down)


@pytest.mark.parametrize("name", NAMES)
def test_rounded_and_spread_mouths_differ_in_shape(name: str) -> None:
    face = animator(name)
    entry = BY_NAME[name]
    rounded = opening_shape(entry, face, Mouth(0.55, wide=-1.0))
    spread = opening_shape(entry, face, Mouth(0.55, wide=1.0))
    assert spread > 1.3 * rounded, (rounded, spread)


@pytest.mark.parametrize("name", NAMES)
def test_the_face_at_rest_is_the_photo(name: str) -> None:
    found = portrait(name)
    face = Animator(found, resolution=512)  # head motion on: at rest (no time given) it stays home
    still = face.still()
    out = face.frame(Mouth(1.0, wide=0.5, stress=1.0), 1.7, blink=1.0)
    assert not np.array_equal(out, still)
    assert np.array_equal(face.frame(Mouth(), out=out), still), "a drawn frame left something behind"
    assert np.array_equal(face.frame(0.0), still)
    assert np.array_equal(face.frame(Mouth(), blink=0.0), still)


@pytest.mark.parametrize("name", NAMES)
def test_spreading_and_rounding_never_fold_the_picture(name: str) -> None:
    """A displacement that changes by a pixel or more per pixel maps two places onto one: the skin folds
    into a crease (a clipped ramp and a steep fall-off under a smile's thin lips both did)."""
    face = Animator(portrait(name), resolution=512, motion=0.0)
    for field in ("spread", "round"):
        for part in face._fields[field]:
            assert part is not None
            steepest = max(float(np.abs(np.gradient(part, axis=axis)).max()) for axis in (0, 1))
            assert steepest < 1.0, (field, steepest)


@pytest.mark.parametrize("name", NAMES)
def test_blinks_and_brows_move_only_around_the_eyes(name: str) -> None:
    found = portrait(name)
    face = animator(name)
    assert found.landmarks is not None
    still = luma(face, face.still())
    eyes = found.landmarks[list(EYES_AND_BROWS)]
    (x0, y0), (x1, y1) = eyes.min(axis=0), eyes.max(axis=0)
    width = x1 - x0
    for mouth, blink in ((Mouth(), 1.0), (Mouth(stress=1.0), 0.0)):
        changed = np.argwhere(np.abs(luma(face, face.frame(mouth, blink=blink)) - still) > 6)
        assert len(changed) > 10, "nothing moved"
        (cy0, cx0), (cy1, cx1) = changed.min(axis=0), changed.max(axis=0)
        assert x0 - 0.2 * width <= cx0 and cx1 <= x1 + 0.2 * width
        assert y0 - 0.5 * width <= cy0 and cy1 <= y1 + 0.1 * width, (cy0, cy1, y0, y1)


@pytest.mark.parametrize("name", NAMES)
def test_the_head_moves_and_nothing_beyond_head_and_neck(name: str) -> None:
    entry = BY_NAME[name]
    found = portrait(name)
    height, width = found.image.shape[:2]
    lively = Animator(found, resolution=max(width, height) // 2 * 2, motion=1.0)
    still = luma(lively, lively.still())
    bx, by, bw, bh = entry["face_box"]
    moved = 0
    for at in (0.7, 1.9, 3.3):
        changed = np.argwhere(np.abs(luma(lively, lively.frame(Mouth(), at, blink=0.0)) - still) > 6)
        moved = max(moved, len(changed))
        if len(changed):
            (y0, x0), (y1, x1) = changed.min(axis=0), changed.max(axis=0)
            assert bx - 0.7 * bw <= x0 and x1 <= bx + 1.7 * bw, "pixels beside the head changed"
            assert by - 1.0 * bh <= y0 and y1 <= by + 2.2 * bh, "pixels above the hair or below the neck"
    assert moved > 100, "the head did not move"


@pytest.mark.parametrize("name", NAMES)
def test_the_inside_of_the_mouth_is_painted_in_its_own_colours(name: str) -> None:
    """Nothing in the mouth comes out brighter than the photo there or the teeth painted into it (a light
    ramp left unclamped once drew white dots along a smiling mouth's upper lip)."""
    face = Animator(portrait(name), resolution=512, motion=0.0)
    rect = face._mouth.rect
    window = (slice(rect.top, rect.bottom), slice(rect.left, rect.right))
    around = (slice(max(rect.top - 6, 0), rect.bottom + 6), slice(max(rect.left - 6, 0), rect.right + 6))
    brightest = max(float(face.base[around].max()), float(face._mouth.colors.teeth.max())) + 8
    for mouth in (Mouth(0.3), Mouth(1.0, wide=0.3), Mouth(0.5, wide=-1.0), Mouth(0.1, bite=1.0)):
        picture = cv2.cvtColor(face.frame(mouth), cv2.COLOR_YUV2BGR_I420)[window]
        assert picture.max() <= brightest, mouth


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n]["lips_parted"]])
def test_pressed_lips_cover_what_the_photo_shows_between_them(name: str) -> None:
    """m, b, p on a photo whose lips are parted: the lips close over its teeth (the middle of the gap a
    person marked turns from teeth to lip)."""
    entry = BY_NAME[name]
    face = animator(name)
    still = luma(face, face.still())
    pressed = luma(face, face.frame(Mouth(press=1.0)))
    upper, lower = point(entry, "upper_lip"), point(entry, "lower_lip")
    x, y = np.round((upper + lower) / 2).astype(int)
    window = (slice(y - 1, y + 2), slice(x - 3, x + 4))
    assert np.abs(pressed[window] - still[window]).mean() > 8, "the lips did not close"
