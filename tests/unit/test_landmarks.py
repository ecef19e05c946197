"""Face landmarks from MediaPipe's detector and mesh run by cv2.dnn: where the lips and eyes are, on the
bundled portrait, on a portrait the cascades got wrong, small in a wide photo, and where a box says."""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from talkstream.avatar.landmarks import MESH_POINTS, find_face, lips_box
from talkstream.avatar.portrait import Box, bundled_portrait_bytes, load_portrait

MODELS = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_landmark.tflite": "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
}
# matplotlib's sample portrait (a dev dependency); the lips hand-measured on it: centre and half extents.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
GRACE_LIPS = ((268, 278), (36, 12))


def bundled() -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(bundled_portrait_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_the_model_files_ship_as_recorded() -> None:
    models = importlib.resources.files("talkstream.avatar.models")
    for name, digest in MODELS.items():
        assert hashlib.sha256((models / name).read_bytes()).hexdigest() == digest
    assert "Apache License" in (models / "LICENSE").read_text()
    assert all(name in (models / "README.md").read_text() for name in MODELS)


def test_the_bundled_portraits_lips_and_eyes() -> None:
    face = find_face(bundled())
    assert face is not None and face.points.shape == (MESH_POINTS, 2)
    upper, lower = face.points[13], face.points[14]  # the inner lips, at the seam
    assert abs(upper[0] - 223) < 6 and 138 <= upper[1] < lower[1] <= 152, (upper, lower)
    x, y, w, h = lips_box(face.points)
    assert x >= 195 and x + w <= 252 and y >= 134 and y + h <= 158


def test_a_portrait_with_glasses_gets_its_mouth_on_its_lips() -> None:
    """The cascades put this mouth on the chin and neck; the mesh finds the lips."""
    portrait = load_portrait(GRACE_HOPPER.read_bytes())
    (cx, cy), (hx, hy) = GRACE_LIPS
    mouth = portrait.mouth
    assert abs(mouth.x + mouth.w / 2 - cx) < hx / 2 and abs(mouth.y + mouth.h / 2 - cy) < hy
    assert mouth.w > hx and mouth.h < 3 * hy
    assert portrait.landmarks is not None
    left, right = portrait.eyes
    assert left.x + left.w < cx < right.x  # the eyes either side of the mouth's centre, above it
    assert max(left.y + left.h, right.y + right.h) < mouth.y


@pytest.mark.parametrize(("size", "width", "height"), [(400, 1600, 1000), (300, 1600, 1000)])
def test_a_small_face_in_a_wide_photo(size: int, width: int, height: int) -> None:
    wide = np.full((height, width, 3), 120, np.uint8)
    x0, y0 = width - size - 100, height - size - 50
    wide[y0 : y0 + size, x0 : x0 + size] = cv2.resize(bundled(), (size, size), interpolation=cv2.INTER_AREA)
    face = find_face(wide)
    assert face is not None
    scale = size / 512
    upper = face.points[13]
    assert abs(upper[0] - (x0 + 223 * scale)) < 6 and abs(upper[1] - (y0 + 143 * scale)) < 6


def test_a_given_box_chooses_the_face() -> None:
    """Two faces: the larger is found by default, the smaller when the request's box points at it."""
    canvas = np.full((700, 1100, 3), 90, np.uint8)
    canvas[100:612, 50:562] = bundled()
    small = cv2.resize(bundled(), (384, 384), interpolation=cv2.INTER_AREA)
    canvas[200:584, 650:1034] = small
    default = find_face(canvas)
    assert default is not None and default.points[13][0] < 562
    scale = 384 / 512
    hinted = find_face(canvas, hint=(650 + round(177 * scale), 200 + round(67 * scale), 70, 70))
    assert hinted is not None and abs(hinted.points[13][0] - (650 + 223 * scale)) < 6


def test_no_face_no_landmarks_and_the_cascades_as_fallback() -> None:
    blank = np.full((240, 240, 3), 180, np.uint8)
    assert find_face(blank) is None
    assert find_face(blank, hint=(60, 60, 100, 100)) is None
    told = load_portrait(cv2.imencode(".png", blank)[1].tobytes(), face=Box(60, 60, 100, 100))
    assert told.landmarks is None and told.face == Box(60, 60, 100, 100)
