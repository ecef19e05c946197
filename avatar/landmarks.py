"""Faces and their 468 landmarks in a photo, with MediaPipe's face detector and face mesh (the model files in
`avatar/models`, Apache-2.0) run by OpenCV's own `cv2.dnn`: `find_face` gives the landmarks of the most
prominent face, or of the face in a given box.

What it must never do: download anything, or share one network between threads (OpenCV's are not safe).
"""

from __future__ import annotations

import importlib.resources
import math
import threading
from typing import Any

import attrs
import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["MESH_POINTS", "FaceLandmarks", "eye_box", "find_face", "lips_box"]

Image = npt.NDArray[Any]
Points = npt.NDArray[np.float32]

MESH_POINTS = 468
DETECTOR_SIZE = 128  # the short-range detector's input, square
MESH_SIZE = 192  # the mesh's input, square
MIN_SCORE = 0.5  # a detection this sure, at least
MIN_PRESENCE = 0.5  # the mesh's own face-presence probability, at least

# MediaPipe's face mesh indices.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # image left
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
EYE_CORNERS = (33, 263)  # outer corners: the line the mesh crop is levelled on


@attrs.frozen(eq=False)
class FaceLandmarks:
    """The 468 mesh points of one face, in photo pixels ((x, y) per row), and the detector's box."""

    points: Points
    box: tuple[float, float, float, float]  # x, y, w, h of the face as the detector saw it
    score: float


def _anchors() -> npt.NDArray[np.float32]:
    """The short-range detector's 896 SSD anchor centres: 16x16 cells x 2, then 8x8 cells x 6."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
    return np.array(centres, np.float32)


_ANCHORS = _anchors()
_local = threading.local()


def _net(name: str) -> Any:
    nets = getattr(_local, "nets", None)
    if nets is None:
        nets = _local.nets = {}
    net = nets.get(name)
    if net is None:
        model = importlib.resources.files("talkstream.avatar.models") / name
        with importlib.resources.as_file(model) as path:
            net = nets[name] = cv2.dnn.readNetFromTFLite(str(path))
    return net


def _detect(image: Image) -> list[tuple[float, float, float, float, float, Points]]:
    """Faces in `image` (BGR) as (score, x, y, w, h, 6 key points), best first, in image pixels."""
    h, w = image.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)  # letterboxed, so the face keeps its shape
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = image
    blob = cv2.dnn.blobFromImage(
        square, 1 / 127.5, (DETECTOR_SIZE, DETECTOR_SIZE), (127.5, 127.5, 127.5), swapRB=True
    )
    net = _net("face_detection_short_range.tflite")
    net.setInput(blob)
    scores, boxes = net.forward(["classificators", "regressors"])
    logits = np.clip(scores.reshape(-1).astype(np.float64), -80, 80)
    probability = 1 / (1 + np.exp(-logits))
    raw = boxes.reshape(-1, 16) / DETECTOR_SIZE
    candidates = np.flatnonzero(probability >= MIN_SCORE)
    found: list[tuple[float, float, float, float, float, Points]] = []
    taken = np.zeros(len(candidates), bool)
    order = candidates[np.argsort(-probability[candidates])]
    decoded = {}
    for i in order:
        cx, cy = raw[i, 0] + _ANCHORS[i, 0], raw[i, 1] + _ANCHORS[i, 1]
        keys = raw[i, 4:].reshape(6, 2) + _ANCHORS[i]
        decoded[i] = (cx, cy, raw[i, 2], raw[i, 3], keys)
    for n, i in enumerate(order):
        if taken[n]:
            continue
        # Blend the overlapping detections by score, as MediaPipe does, instead of keeping one of them.
        group = [m for m, j in enumerate(order) if not taken[m] and _iou(decoded[i], decoded[j]) > 0.3]
        weights = np.array([probability[order[m]] for m in group], np.float32)
        parts = [decoded[order[m]] for m in group]
        cx, cy, bw, bh = (float(np.average([p[k] for p in parts], weights=weights)) for k in range(4))
        keys = np.average(np.stack([p[4] for p in parts]), axis=0, weights=weights)
        for m in group:
            taken[m] = True
        scale = side
        found.append(
            (
                float(probability[i]),
                (cx - bw / 2) * scale - left,
                (cy - bh / 2) * scale - top,
                bw * scale,
                bh * scale,
                (keys * scale - (left, top)).astype(np.float32),
            )
        )
    return found


def _iou(a: tuple[Any, ...], b: tuple[Any, ...]) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _mesh(image: Image, centre: tuple[float, float], size: float, angle: float) -> tuple[Points, float]:
    """The mesh of the face in the square of side `size` around `centre`, turned by `angle` radians so the
    eye line is level: (468 x (x, y) in image pixels, face-presence probability)."""
    cos, sin = math.cos(angle), math.sin(angle)
    scale = MESH_SIZE / size
    # image -> crop: move the centre to the origin, turn by -angle, scale, move to the crop's centre
    matrix = np.array(
        [
            [scale * cos, scale * sin, 0.0],
            [-scale * sin, scale * cos, 0.0],
        ],
        np.float64,
    )
    matrix[:, 2] = np.array([MESH_SIZE / 2, MESH_SIZE / 2]) - matrix[:, :2] @ np.array(centre)
    crop = cv2.warpAffine(image, matrix, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR)
    blob = cv2.dnn.blobFromImage(crop, 1 / 255.0, (MESH_SIZE, MESH_SIZE), (0, 0, 0), swapRB=True)
    net = _net("face_landmark.tflite")
    net.setInput(blob)
    presence, points = net.forward(["conv2d_31", "conv2d_21"])
    probability = 1 / (1 + math.exp(-float(np.clip(presence.reshape(-1)[0], -100, 100))))
    local = points.reshape(MESH_POINTS, 3)[:, :2].astype(np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    mapped = local @ inverse[:, :2].T + inverse[:, 2]
    return mapped.astype(np.float32), probability


def _refine(image: Image, points: Points) -> tuple[Points, float]:
    """A second mesh pass on a crop made from the first pass's own points."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    (rx, ry), (lx, ly) = points[EYE_CORNERS[0]], points[EYE_CORNERS[1]]
    angle = math.atan2(float(ly - ry), float(lx - rx))
    return _mesh(image, ((x0 + x1) / 2, (y0 + y1) / 2), max(x1 - x0, y1 - y0) * 1.5, angle)


def _landmarks_in(
    image: Image, box: tuple[float, float, float, float], keys: Points | None, score: float
) -> FaceLandmarks | None:
    x, y, w, h = box
    angle = 0.0
    if keys is not None:  # the detector's eyes: key points 0 (image left) and 1
        angle = math.atan2(float(keys[1, 1] - keys[0, 1]), float(keys[1, 0] - keys[0, 0]))
    points, presence = _mesh(image, (x + w / 2, y + h / 2), max(w, h) * 1.5, angle)
    if presence < MIN_PRESENCE:
        return None
    refined, presence = _refine(image, points)
    if presence < MIN_PRESENCE:
        return None
    return FaceLandmarks(points=refined, box=box, score=score)


def find_face(image: Image, hint: tuple[int, int, int, int] | None = None) -> FaceLandmarks | None:
    """The landmarks of the largest face in `image` (BGR), or of the face inside `hint` (x, y, w, h);
    None when there is none. Faces small in a wide photo are looked for again in overlapping tiles."""
    if hint is not None:
        hx, hy, hw, hh = hint
        if min(hw, hh) < 2:
            return None
        pad = max(hw, hh) // 2
        y0, x0 = max(hy - pad, 0), max(hx - pad, 0)
        crop = image[y0 : hy + hh + pad, x0 : hx + hw + pad]
        inside = _detect(crop) if crop.size else []
        if inside:
            score, x, y, w, h, keys = max(inside, key=lambda f: f[3] * f[4])
            return _landmarks_in(image, (x + x0, y + y0, w, h), keys + _offset(x0, y0), score)
        # No detection there: the mesh alone, level, on the box as given.
        return _landmarks_in(image, (float(hx), float(hy), float(hw), float(hh)), None, 0.0)
    found = _detect(image)
    if not found:
        found = _tiled(image)
    if not found:
        return None
    score, x, y, w, h, keys = max(found, key=lambda f: f[3] * f[4])
    return _landmarks_in(image, (x, y, w, h), keys, score)


def _tiled(image: Image) -> list[tuple[float, float, float, float, float, Points]]:
    """Detections in overlapping square tiles of half, then a third of, the photo's shorter side."""
    h, w = image.shape[:2]
    for parts in (2, 3, 4):
        side = min(h, w) * 2 // (parts + 1)
        if side < 64:
            break
        found = []
        for ty in np.linspace(0, h - side, parts + 1 if h > w else parts).astype(int):
            for tx in np.linspace(0, w - side, parts + 1 if w >= h else parts).astype(int):
                for score, x, y, fw, fh, keys in _detect(image[ty : ty + side, tx : tx + side]):
                    found.append((score, x + tx, y + ty, fw, fh, keys + _offset(tx, ty)))
        if found:
            return found
    return []


def _offset(x: float, y: float) -> Points:
    return np.array((x, y), np.float32)


def lips_box(points: Points) -> tuple[int, int, int, int]:
    """(x, y, w, h) around the outer lip line."""
    return _box(points[list(OUTER_LIPS)], 0.0, 0.0)


def eye_box(points: Points, left: bool) -> tuple[int, int, int, int]:
    """(x, y, w, h): a square on one eye, a little wider than its corners, as an eye cascade boxes it."""
    eye = points[list(LEFT_EYE if left else RIGHT_EYE)]
    (x0, y0), (x1, y1) = eye.min(axis=0), eye.max(axis=0)
    side = float(x1 - x0) * 1.15
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    return round(cx - side / 2), round(cy - side / 2), round(side), round(side)


def _box(points: Points, grow_x: float, grow_y: float) -> tuple[int, int, int, int]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    dx, dy = (x1 - x0) * grow_x / 2, (y1 - y0) * grow_y / 2
    x0, y0, x1, y1 = x0 - dx, y0 - dy, x1 + dx, y1 + dy
    return round(float(x0)), round(float(y0)), round(float(x1 - x0)), round(float(y1 - y0))
