"""Frames of a talking face from one photo, as I420 arrays: the mouth opens with the speech, the eyes blink
on the face's own schedule, the head moves as its driver preset says.

What it must never do: allocate per-frame buffers the size of the frame beyond the output, or touch pixels
outside the face regions.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import cv2
import numpy as np
import numpy.typing as npt

from talkstream.engine.errors import BadRequestError
from talkstream.engine.ports import FRAME_SECONDS

from .portrait import Box, Portrait

__all__ = ["Animator", "FrameGeometry"]

BLINK_SHAPE = (0.35, 1.0, 1.0, 0.5)  # how closed the eyelids are over a blink's frames
BLINK_GAP = (3.0, 5.0)  # seconds between blinks, drawn uniformly
BLINK_CYCLE = 600.0  # the blink schedule repeats after this long

# OpenCV hands back arrays of unspecified dtype; frames here are uint8 throughout.
Image = npt.NDArray[Any]
Field = npt.NDArray[np.float32]


@attrs.frozen
class FrameGeometry:
    """Where the output frame comes from in the photo, and its size (both sides even)."""

    crop: Box
    width: int
    height: int

    @classmethod
    def choose(cls, portrait: Portrait, resolution: int, stitch: bool) -> FrameGeometry:
        ih, iw = portrait.image.shape[:2]
        if stitch:
            crop = Box(0, 0, iw, ih)
        else:
            face = portrait.face
            side = min(round(max(face.w, face.h) * 2.4), iw, ih)
            cx, cy = face.center
            x = int(min(max(cx - side / 2, 0), iw - side))
            y = int(min(max(cy - side / 2 + face.h * 0.1, 0), ih - side))
            crop = Box(x, y, side, side)
        if crop.w < 1 or crop.h < 1:
            raise BadRequestError("the face box leaves nothing of the photo to show")
        scale = resolution / max(crop.w, crop.h)
        width = max(2, round(crop.w * scale) // 2 * 2)
        height = max(2, round(crop.h * scale) // 2 * 2)
        return cls(crop=crop, width=width, height=height)

    def map_box(self, box: Box) -> Box:
        sx, sy = self.width / self.crop.w, self.height / self.crop.h
        return Box(
            round((box.x - self.crop.x) * sx),
            round((box.y - self.crop.y) * sy),
            round(box.w * sx),
            round(box.h * sy),
        )


def _even_region(
    x0: float, y0: float, x1: float, y1: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """Clip to the frame and align to even pixels so the region maps cleanly onto the chroma planes."""
    left = max(0, int(x0) // 2 * 2)
    top = max(0, int(y0) // 2 * 2)
    right = min(width, (int(np.ceil(x1)) + 1) // 2 * 2)
    bottom = min(height, (int(np.ceil(y1)) + 1) // 2 * 2)
    return left, top, max(right, left + 2), max(bottom, top + 2)


class _Region:
    """One animated region: its place, its still pixels and a unit displacement field."""

    def __init__(self, base: Image, left: int, top: int, right: int, bottom: int, field: Field) -> None:
        self.left, self.top, self.right, self.bottom = left, top, right, bottom
        self.still = np.ascontiguousarray(base[top:bottom, left:right])
        h, w = self.still.shape[:2]
        self.grid_x, self.grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.field = field.astype(np.float32)

    def pulled(self, amount: float, scratch: _Scratch) -> Image:
        """The region with every pixel sampled `amount * field` pixels above where it sits (in `scratch`)."""
        map_y = scratch.get(("map", id(self)), self.grid_y.shape, np.float32)
        cv2.scaleAdd(self.field, -float(amount), self.grid_y, dst=map_y)
        out = scratch.get(("pulled", id(self)), self.still.shape, np.uint8)
        cv2.remap(self.still, self.grid_x, map_y, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_REPLICATE)
        return out


class _Scratch:
    """Work buffers one thread reuses from frame to frame, so that drawing a frame allocates nothing the
    size of the picture (at 25 frames a second per stream, such buffers churn the allocator)."""

    def __init__(self) -> None:
        self._buffers: dict[Any, Image] = {}

    def get(self, key: Any, shape: tuple[int, ...], dtype: Any) -> Image:
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[key] = np.empty(shape, dtype)
        return buffer


class Animator:
    """Renders I420 frames of `portrait` at `resolution` (longest side); `stitch` keeps the whole photo."""

    def __init__(
        self,
        portrait: Portrait,
        *,
        resolution: int = 512,
        stitch: bool = True,
        mouth_gain: float = 1.0,
        motion: float = 0.6,
        seed: int = 0,
    ) -> None:
        self.geometry = geometry = FrameGeometry.choose(portrait, resolution, stitch)
        crop = geometry.crop
        source = portrait.image[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]
        interpolation = cv2.INTER_AREA if geometry.width < crop.w else cv2.INTER_LINEAR
        self.base = cv2.resize(source, (geometry.width, geometry.height), interpolation=interpolation)
        self.width, self.height = geometry.width, geometry.height
        self._base_i420: Image = cv2.cvtColor(self.base, cv2.COLOR_BGR2YUV_I420)
        self.mouth_gain = mouth_gain

        face = geometry.map_box(portrait.face)
        mouth = geometry.map_box(portrait.mouth)
        self.mouth_box = mouth
        self.eye_boxes = tuple(geometry.map_box(eye) for eye in portrait.eyes)
        self._max_drop = max(2.0, face.h * 0.09)  # jaw drop at full openness, in pixels
        self._mouth = self._mouth_region(face, mouth)
        self._eyes = [self._eye_region(eye) for eye in self.eye_boxes]
        # the mouth's dark inside (BGR), as an image the size of the mouth region, for per-pixel blending
        self._interior = np.empty_like(self._mouth.still)
        self._interior[:] = (34, 30, 52)
        self._scratch = threading.local()  # each thread that draws frames has its own work buffers
        # Head motion: the whole face region (hair to chin) moves a few pixels and tilts a little, feathered
        # into the still background, so only that region changes from frame to frame.
        self.motion = max(0.0, motion)
        self._head = self._head_region(face)
        self._face_size = float(face.h)
        rng = np.random.default_rng(seed)
        phases = rng.uniform(0, 2 * np.pi, 3)
        self._phases = (float(phases[0]), float(phases[1]), float(phases[2]))
        # Blinks every 3-5 s; the schedule repeats after BLINK_CYCLE seconds.
        gaps = rng.uniform(*BLINK_GAP, size=int(BLINK_CYCLE / BLINK_GAP[0]) + 1)
        starts = np.cumsum(gaps)
        self._blink_starts: npt.NDArray[np.float64] = starts[starts < BLINK_CYCLE - BLINK_GAP[0]]

    # -- set-up ------------------------------------------------------------------------------------------

    def _head_region(self, face: Box) -> tuple[int, int, int, int, npt.NDArray[np.float32]]:
        left, top, right, bottom = _even_region(
            face.x - face.w * 0.45,
            face.y - face.h * 0.55,
            face.x + face.w * 1.45,
            face.y + face.h * 1.35,
            self.width,
            self.height,
        )
        h, w = bottom - top, right - left
        ys = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)[:, None] / max(h * 0.18, 1.0)
        xs = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)[None, :] / max(w * 0.18, 1.0)
        feather = np.clip(np.minimum(ys, xs), 0.0, 1.0)
        feather = feather * feather * (3 - 2 * feather)  # smoothstep
        self._head_still = np.ascontiguousarray(self.base[top:bottom, left:right])
        self._feather_out = np.ascontiguousarray(1.0 - feather, dtype=np.float32)  # weight of the still
        return left, top, right, bottom, np.ascontiguousarray(feather, dtype=np.float32)

    def blink_at(self, at: float) -> float:
        """How far the eyelids are closed `at` seconds into a talk, on this face's blink schedule."""
        t = at % BLINK_CYCLE
        index = int(np.searchsorted(self._blink_starts, t, side="right")) - 1
        if index < 0:
            return 0.0
        step = int((t - float(self._blink_starts[index])) / FRAME_SECONDS)
        return BLINK_SHAPE[step] if step < len(BLINK_SHAPE) else 0.0

    def head_pose(self, at: float, openness: float = 0.0) -> tuple[float, float, float]:
        """(dx, dy, degrees) of the head at time `at` seconds into a talk: slow sway, a nod with speech."""
        if self.motion <= 0.0:
            return 0.0, 0.0, 0.0
        a, b, c = self._phases
        scale = self.motion * self._face_size / 100.0  # pixels per unit of motion, face-relative
        dx = scale * (1.6 * np.sin(2 * np.pi * 0.21 * at + a) + 0.6 * np.sin(2 * np.pi * 0.53 * at + b))
        dy = scale * (0.9 * np.sin(2 * np.pi * 0.17 * at + b) + 1.2 * openness)
        angle = self.motion * (0.9 * np.sin(2 * np.pi * 0.13 * at + c))
        return float(dx), float(dy), float(angle)

    def _mouth_region(self, face: Box, mouth: Box) -> _Region:
        lip_line = mouth.y + mouth.h * 0.5
        chin = min(face.y + face.h * 1.12, self.height - 1)
        left, top, right, bottom = _even_region(
            mouth.x - mouth.w * 0.35,
            lip_line - mouth.h * 0.6,
            mouth.x + mouth.w * 1.35,
            max(chin, lip_line + 4),
            self.width,
            self.height,
        )
        h, w = bottom - top, right - left
        ys = np.arange(h, dtype=np.float32)[:, None] + top
        xs = np.arange(w, dtype=np.float32)[None, :] + left
        # Across the mouth: a smooth bump, widest at the centre, gone past the corners.
        across = np.clip(1.0 - ((xs - (mouth.x + mouth.w / 2)) / (mouth.w * 0.75)) ** 2, 0.0, 1.0)
        # Down the face: the lower lip moves the full drop, the chin less, the region's edge not at all.
        below = np.clip((bottom - ys) / max(bottom - lip_line, 1.0), 0.0, 1.0) * (ys >= lip_line)
        above = np.clip(1.0 - (lip_line - ys) / max(lip_line - top, 1.0), 0.0, 1.0) * (ys < lip_line)
        field = across * (below - 0.25 * above) * self._max_drop
        self._lip_line = lip_line - top
        self._mouth_center_x = mouth.x + mouth.w / 2 - left
        self._mouth_half_width = mouth.w * 0.36
        return _Region(self.base, left, top, right, bottom, field)

    def _eye_region(self, eye: Box) -> _Region:
        # The eye sits in the middle of the cascade's box; the lid above it comes down over it.
        left, top, right, bottom = _even_region(
            eye.x + eye.w * 0.1,
            eye.y + eye.h * 0.2,
            eye.x + eye.w * 0.9,
            eye.y + eye.h * 0.8,
            self.width,
            self.height,
        )
        h, w = bottom - top, right - left
        ys = np.arange(h, dtype=np.float32)[:, None]
        xs = np.arange(w, dtype=np.float32)[None, :]
        across = np.clip(1.0 - ((xs - w / 2) / (w * 0.5)) ** 2, 0.0, 1.0)
        down = np.clip(np.sin(np.pi * ys / max(h - 1, 1)), 0.0, 1.0)
        return _Region(self.base, left, top, right, bottom, across * down * (h * 0.5))

    # -- frames ----------------------------------------------------------------------------------------------

    def still(self) -> Image:
        """The photo at the output size, I420, nothing moved."""
        return self._base_i420.copy()

    def frame(
        self,
        openness: float,
        at: float | None = None,
        *,
        blink: float | None = None,
        out: Image | None = None,
    ) -> Image:
        """One I420 frame: mouth `openness` in [0, 1], the head and eyelids as they are `at` seconds into a
        talk (None: at rest, eyes open). `blink` overrides the face's own blink schedule.

        With `out` (an array shaped like `still()`), the frame is drawn there and returned; otherwise into a
        new array. Apart from `out`, nothing the size of the picture is allocated per frame.
        """
        if blink is None:
            blink = self.blink_at(at) if at is not None else 0.0
        scratch: _Scratch | None = getattr(self._scratch, "buffers", None)
        if scratch is None:
            scratch = self._scratch.buffers = _Scratch()
        if out is None:
            out = self._base_i420.copy()
        else:
            np.copyto(out, self._base_i420)
        openness = min(max(openness * self.mouth_gain, 0.0), 1.0)
        pose = self.head_pose(at, openness) if at is not None else (0.0, 0.0, 0.0)
        moving = abs(pose[0]) + abs(pose[1]) + abs(pose[2]) > 0.05
        if not moving:
            if openness > 0.02:
                self._paste(out, self._open_mouth(openness, scratch), self._mouth, scratch)
            if blink > 0.05:
                for eye in self._eyes:
                    self._paste(out, eye.pulled(min(blink, 1.0), scratch), eye, scratch)
            return out
        # Draw mouth and eyes into the head region, then move the region as one.
        left, top, right, bottom, feather = self._head
        head = scratch.get("head", self._head_still.shape, np.uint8)
        np.copyto(head, self._head_still)
        if openness > 0.02:
            self._put(head, self._open_mouth(openness, scratch), self._mouth, left, top)
        if blink > 0.05:
            for eye in self._eyes:
                self._put(head, eye.pulled(min(blink, 1.0), scratch), eye, left, top)
        h, w = head.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h * 0.7), pose[2], 1.0)
        matrix[0, 2] += pose[0]
        matrix[1, 2] += pose[1]
        moved = scratch.get("moved", head.shape, np.uint8)
        cv2.warpAffine(head, matrix, (w, h), dst=moved, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        blended = scratch.get("blended", head.shape, np.uint8)
        cv2.blendLinear(moved, self._head_still, feather, self._feather_out, dst=blended)
        self._paste_box(out, blended, left, top, right, bottom, scratch)
        return out

    @staticmethod
    def _put(head: Image, pixels: Image, region: _Region, left: int, top: int) -> None:
        h, w = pixels.shape[:2]
        y, x = region.top - top, region.left - left
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, head.shape[0]), min(x + w, head.shape[1])
        if y1 > y0 and x1 > x0:
            head[y0:y1, x0:x1] = pixels[y0 - y : y1 - y, x0 - x : x1 - x]

    def _open_mouth(self, openness: float, scratch: _Scratch) -> Image:
        region = self._mouth
        pixels = region.pulled(openness, scratch)
        gap = openness * self._max_drop
        if gap >= 1.0:
            h, w = pixels.shape[:2]
            mask = scratch.get("mask", (h, w), np.uint8)
            mask.fill(0)
            center = (round(self._mouth_center_x), round(self._lip_line + gap * 0.45))
            axes = (max(1, round(self._mouth_half_width * (0.7 + 0.3 * openness))), max(1, round(gap * 0.55)))
            cv2.ellipse(mask, center, axes, 0, 0, 360, 255, -1, lineType=cv2.LINE_AA)
            soft = scratch.get("soft", (h, w), np.uint8)
            cv2.GaussianBlur(mask, (5, 5), 0, dst=soft)  # soft lips, no cut-out edge
            inside = scratch.get("inside", (h, w), np.float32)
            np.multiply(soft, np.float32(0.92 / 255.0), out=inside, casting="unsafe")
            lips = scratch.get("lips", (h, w), np.float32)
            np.subtract(np.float32(1.0), inside, out=lips)
            cv2.blendLinear(pixels, self._interior, lips, inside, dst=pixels)
        return pixels

    def _paste(self, out: Image, pixels: Image, region: _Region, scratch: _Scratch) -> None:
        self._paste_box(out, pixels, region.left, region.top, region.right, region.bottom, scratch)

    def _paste_box(
        self, out: Image, pixels: Image, left: int, top: int, right: int, bottom: int, scratch: _Scratch
    ) -> None:
        # The same conversion as the whole frame's, so the region matches its surroundings exactly.
        h, w = bottom - top, right - left
        i420 = scratch.get(("i420", h, w), (h * 3 // 2, w), np.uint8)
        cv2.cvtColor(pixels, cv2.COLOR_BGR2YUV_I420, dst=i420)
        flat_region = i420.reshape(-1)
        out[top:bottom, left:right] = flat_region[: h * w].reshape(h, w)
        flat = out.reshape(-1)
        width, height = self.width, self.height
        luma, chroma = width * height, (width // 2) * (height // 2)
        u_plane = flat[luma : luma + chroma].reshape(height // 2, width // 2)
        v_plane = flat[luma + chroma :].reshape(height // 2, width // 2)
        quarter = (h // 2) * (w // 2)
        u_plane[top // 2 : bottom // 2, left // 2 : right // 2] = flat_region[
            h * w : h * w + quarter
        ].reshape(h // 2, w // 2)
        v_plane[top // 2 : bottom // 2, left // 2 : right // 2] = flat_region[h * w + quarter :].reshape(
            h // 2, w // 2
        )
