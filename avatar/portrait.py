"""The photo to animate: image bytes checked and decoded, the face, eyes, mouth and landmarks found once
(the face mesh, or OpenCV's Haar cascades when it finds nothing), and the bundled portraits.

What it must never do: decode an image whose header announces more pixels than the cap, or fetch
anything (fetching is `avatar.fetch`'s job).
"""

from __future__ import annotations

import importlib.resources
import struct
import threading
from typing import Any, Literal

import attrs
import cv2
import numpy as np
import numpy.typing as npt

from talkstream.engine.errors import BadRequestError, UnsupportedMediaTypeError

from .landmarks import Points, eye_box, find_face, lips_box

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "MIN_FACE",
    "Box",
    "Portrait",
    "bundled_portrait_bytes",
    "find_features",
    "image_size",
    "load_portrait",
]

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000; checked from the header before decoding
MIN_FACE = 16  # pixels: the smallest face box a request may give

ImageFormat = Literal["png", "jpeg", "webp", "bmp"]

# OpenCV hands back arrays of unspecified dtype; frames here are uint8 throughout.
Image = npt.NDArray[Any]


@attrs.frozen
class Box:
    """An axis-aligned box in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)


@attrs.frozen
class Portrait:
    """A decoded photo (BGR) and its face features, all in the photo's pixels. `landmarks`: the face
    mesh's 468 points when the mesh found the face (None when only the cascades did)."""

    image: Image
    face: Box
    eyes: tuple[Box, Box]
    mouth: Box
    landmarks: Points | None = attrs.field(default=None, eq=False)


def bundled_portrait_bytes(name: str = "astronaut") -> bytes:
    """The bytes of a portrait that ships with talkstream (``bundled:astronaut``)."""
    if name != "astronaut":
        raise BadRequestError(f"no bundled portrait named {name!r}")
    return (importlib.resources.files("talkstream.avatar") / "assets" / "astronaut.png").read_bytes()


def image_size(data: bytes) -> tuple[ImageFormat, int, int]:
    """Sniff the format and the pixel size from the header only; raise 415 for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(b"\xff\xd8"):
        return "jpeg", *_jpeg_size(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp", *_webp_size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return "bmp", abs(width), abs(height)
    raise UnsupportedMediaTypeError("source is not a PNG, JPEG, WebP or BMP image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    raise UnsupportedMediaTypeError("JPEG without a frame header")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise UnsupportedMediaTypeError("WebP without a known header")


_cascades = threading.local()


def _cascade(name: str) -> cv2.CascadeClassifier:
    """This thread's own copy of an OpenCV cascade.

    OpenCV's algorithm objects are not thread-safe (its maintainers: "create for each thread own detector"):
    one CascadeClassifier shared by the executor's threads failed under concurrent creates with
    ``vector::_M_range_check`` from ``detectMultiScale``. A copy per thread costs ~1 MB and one load each.
    """
    loaded: dict[str, cv2.CascadeClassifier] = _cascades.__dict__.setdefault("by_name", {})
    classifier = loaded.get(name)
    if classifier is None:
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
        if classifier.empty():  # pragma: no cover - a broken OpenCV install
            raise RuntimeError(f"OpenCV cascade {name} is missing (opencv-python-headless 4.x ships it)")
        loaded[name] = classifier
    return classifier


Features = tuple[Box, tuple[Box, Box], Box, Points | None]


def find_features(image: Image, face: Box | None = None) -> Features:
    """The face (found, or the one given), its eyes, its mouth and its landmarks: from the face mesh when it
    finds the face (seeded by the given box), else from OpenCV's Haar cascades."""
    found = find_face(image, hint=(face.x, face.y, face.w, face.h) if face is not None else None)
    if found is not None:
        points = found.points
        if face is None:  # the mesh's extent, squared from the forehead down, as a cascade boxes a face
            (x0, y0), (x1, _) = points.min(axis=0), points.max(axis=0)
            face = Box(round(float(x0)), round(float(y0)), round(float(x1 - x0)), round(float(x1 - x0)))
        eyes = (Box(*eye_box(points, left=False)), Box(*eye_box(points, left=True)))
        return face, eyes, Box(*lips_box(points)), points
    return (*_cascade_features(image, face), None)


def _cascade_features(image: Image, face: Box | None) -> tuple[Box, tuple[Box, Box], Box]:
    """The fallback: the face, eyes and lips as OpenCV's Haar cascades and the skin's colours find them."""
    gray = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    if face is None:
        side = min(gray.shape[:2])
        found = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(max(24, side // 12),) * 2
        )
        if len(found) == 0:
            raise BadRequestError("no face found in the source image; pass `face` to say where it is")
        x, y, w, h = max(found, key=lambda f: int(f[2]) * int(f[3]))
        face = Box(int(x), int(y), int(w), int(h))
    fx, fy, fw, fh = face.x, face.y, face.w, face.h
    roi = gray[max(fy, 0) : fy + fh, max(fx, 0) : fx + fw]

    eyes = [
        Box(fx + int(ex), fy + int(ey), int(ew), int(eh))
        for ex, ey, ew, eh in _detect(roi[: fh // 2], "haarcascade_eye.xml", 1.1, 5)
    ]
    eyes.sort(key=lambda b: b.x)
    if len(eyes) >= 2 and eyes[-1].x - eyes[0].x > fw // 5:
        left, right = eyes[0], eyes[-1]
    else:
        size = round(fw * 0.28)
        left = Box(round(fx + fw * 0.14), round(fy + fh * 0.24), size, size)
        right = Box(round(fx + fw * 0.58), round(fy + fh * 0.24), size, size)

    mouth = _find_lips(image, face) or Box(
        round(fx + fw * 0.27), round(fy + fh * 0.76), round(fw * 0.46), round(fh * 0.16)
    )
    return face, (left, right), mouth


def _find_lips(image: Image, face: Box) -> Box | None:
    """The mouth as the band of rows below the nose that stands out from the skin around it.

    Lips are darker and redder than skin, teeth brighter; all of them differ from the skin's median row.
    A Haar face box puts the mouth between about 76 % and 102 % of its height.
    """
    x0, x1 = max(face.x + face.w * 3 // 10, 0), face.x + face.w * 7 // 10
    y0, y1 = max(face.y + face.h * 76 // 100, 0), min(face.y + face.h * 102 // 100, image.shape[0])
    patch = image[y0:y1, x0:x1].astype(np.float32)
    if patch.shape[0] < 8 or patch.shape[1] < 6:
        return None
    luma = patch.mean(axis=2).mean(axis=1)
    redness = (patch[:, :, 2] - (patch[:, :, 1] + patch[:, :, 0]) / 2).mean(axis=1)
    contrast = np.abs(luma - np.median(luma)) + 2.0 * np.abs(redness - np.median(redness))
    if contrast.std() < 1.0:
        return None
    rows = np.nonzero(contrast > contrast.mean() + 0.5 * contrast.std())[0]
    if len(rows) < 2:
        return None
    top, bottom = int(rows[0]), int(rows[-1])
    width = round(face.w * 0.5)
    return Box(round(face.x + face.w * 0.25), y0 + top, width, bottom - top + 1)


def _detect(gray: Image, cascade: str, scale: float, neighbours: int) -> list[tuple[int, int, int, int]]:
    if gray.size == 0 or min(gray.shape[:2]) < 20:
        return []
    found = _cascade(cascade).detectMultiScale(gray, scaleFactor=scale, minNeighbors=neighbours)
    return [tuple(int(v) for v in f) for f in found]  # type: ignore[misc]


def load_portrait(
    data: bytes, *, face: Box | None = None, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_PIXELS
) -> Portrait:
    """Decode image bytes (format sniffed, sizes capped) and find the face and its features."""
    if len(data) > max_bytes:
        raise BadRequestError(f"source image is larger than {max_bytes} bytes")
    _, width, height = image_size(data)
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise BadRequestError(f"source image has {width}x{height} pixels; at most {max_pixels} are allowed")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnsupportedMediaTypeError("source image could not be decoded")
    if image.shape[0] < 64 or image.shape[1] < 64:
        raise BadRequestError("source image is smaller than 64x64 pixels")
    if face is not None and min(face.w, face.h) < MIN_FACE:
        raise BadRequestError(
            f"face: a box of {face.w} pixels is too small to hold a face (at least {MIN_FACE})"
        )
    found_face, eyes, mouth, points = find_features(image, face)
    image.setflags(write=False)  # one cached portrait serves many streams' animators, on several threads
    if points is not None:
        points.setflags(write=False)
    return Portrait(image=image, face=found_face, eyes=eyes, mouth=mouth, landmarks=points)
