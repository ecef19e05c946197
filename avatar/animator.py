"""Frames of a talking face from one photo, as I420 arrays, moved by the face's own landmarks: the lips part
at their seam and the jaw drops with the speech, the mouth rounds, spreads or tucks its lower lip as the
sounds ask, the inside of the mouth shows teeth, tongue and throat, the eyelids close over the eyes, the brows
lift on stressed syllables, and the head turns a little about the neck and breathes.

How: every motion is a displacement field computed once per photo; a frame is a weighted sum of them and
one `cv2.remap` of the face (eyelids add a small per-frame field of their own), then, when the head moves,
one more of the head and neck. The mouth's inside is painted where the lips have parted.

What it must never do: allocate per-frame buffers the size of the frame beyond the output, touch pixels
outside the head and neck, or draw anything but the photo itself when the face is at rest.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import cv2
import numpy as np
import numpy.typing as npt

from talkstream.engine.errors import BadRequestError
from talkstream.engine.ports import FRAME_SECONDS, Mouth

from .portrait import Box, Portrait
from .rig import EyeRig, FaceRig, along, seam

__all__ = ["Animator", "FrameGeometry"]

BLINK_SHAPE = (0.35, 1.0, 1.0, 0.5)  # how closed the eyelids are over a blink's frames
BLINK_GAP = (3.0, 5.0)  # seconds between blinks, drawn uniformly
BLINK_CYCLE = 600.0  # the blink schedule repeats after this long

JAW_DROP = 0.10  # the chin's drop at full openness, in face heights
LOWER_LIP_SHARE = 0.85  # the lower lip drops this much of the chin's drop (the jaw turns about the ear)
UPPER_LIP_LIFT = 0.22  # and the upper lip rises this much of it
SPREAD = 0.12  # each corner moves out this many mouth widths when spread, in when rounded (x 1.3)
BROW_LIFT = 0.03  # face heights, on a stressed syllable
BREATH_SECONDS = 4.2

# OpenCV hands back arrays of unspecified dtype; frames here are uint8 throughout.
Image = npt.NDArray[Any]
Field = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]


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

    def map_points(self, points: Floats) -> Floats:
        sx, sy = self.width / self.crop.w, self.height / self.crop.h
        out: Floats = (points - (self.crop.x, self.crop.y)) * (sx, sy)
        return out


def _gentle(field: Floats, steepest: float = 0.75) -> Floats:
    """`field`, scaled down if need be so that it changes by at most `steepest` pixels per pixel: a
    displacement steeper than 1 maps two places of the photo onto one, and the skin folds into a crease."""
    slope = (
        max(float(np.abs(np.gradient(field, axis=axis)).max()) for axis in (0, 1)) if field.size > 1 else 0.0
    )
    out: Floats = field * min(1.0, steepest / slope) if slope > 0 else field
    return out


def _smoothstep(t: Floats) -> Floats:
    t = np.clip(t, 0.0, 1.0)
    out: Floats = t * t * (3.0 - 2.0 * t)
    return out


@attrs.frozen
class _Rect:
    """A region of the frame, aligned to even pixels so that it maps cleanly onto the chroma planes."""

    left: int
    top: int
    right: int
    bottom: int

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> _Rect:
        left = max(0, int(np.floor(x0)) // 2 * 2)
        top = max(0, int(np.floor(y0)) // 2 * 2)
        right = min(width, (int(np.ceil(x1)) + 1) // 2 * 2)
        bottom = min(height, (int(np.ceil(y1)) + 1) // 2 * 2)
        return cls(left, top, max(right, left + 2), max(bottom, top + 2))

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def grid(self) -> tuple[Floats, Floats]:
        """Frame coordinates of every pixel in the region, as (x, y) arrays."""
        xs, ys = np.meshgrid(np.arange(self.left, self.right), np.arange(self.top, self.bottom))
        return xs.astype(np.float64), ys.astype(np.float64)

    def within(self, outer: _Rect) -> _Rect:
        """This region cut to `outer` (at least 2 x 2 pixels)."""
        left, top = (
            min(max(self.left, outer.left), outer.right - 2),
            min(max(self.top, outer.top), outer.bottom - 2),
        )
        return _Rect(
            left,
            top,
            max(min(self.right, outer.right), left + 2),
            max(min(self.bottom, outer.bottom), top + 2),
        )

    def inside(self, outer: _Rect) -> tuple[slice, slice]:
        """This region's rows and columns within `outer`."""
        return (
            slice(self.top - outer.top, self.bottom - outer.top),
            slice(self.left - outer.left, self.right - outer.left),
        )


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


class _Eyelid:
    """One eye's blink: the skin from the brow down to the upper lid stretches down over the eye to a new lid
    line; below that line the eye shows as it is."""

    def __init__(self, eye: EyeRig, face: _Rect, frame_w: int, frame_h: int) -> None:
        self._face = face
        x0, x1 = float(eye.upper[0, 0]), float(eye.upper[-1, 0])
        opening = max(eye.opening, 1.0)
        brow_y = float(np.min(eye.brow[:, 1]))
        top = max(min(brow_y, float(np.min(eye.upper[:, 1])) - opening), float(face.top))
        self.rect = _Rect.around(
            x0 - 1, top, x1 + 1, float(np.max(eye.lower[:, 1])) + 2, frame_w, frame_h
        ).within(face)
        xs = np.arange(self.rect.left, self.rect.right, dtype=np.float64)
        inside = (xs >= x0) & (xs <= x1)
        upper = along(eye.upper, xs)
        lower = np.maximum(along(eye.lower, xs), upper)
        skin_top = np.minimum(along(eye.brow, xs) + 0.35 * (upper - along(eye.brow, xs)), upper - 1.0)
        self.upper = np.where(inside, upper, 0.0)[None, :].astype(np.float32)
        self.gap = np.where(inside, lower - upper, 0.0)[None, :].astype(np.float32)
        self.skin_top = np.where(inside, np.maximum(skin_top, self.rect.top), 0.0)[None, :].astype(np.float32)
        self.rows = np.arange(self.rect.top, self.rect.bottom, dtype=np.float32)[:, None]

    def add(self, map_y: Field, amount: float) -> None:
        """Add the blink's pull (`amount` 1: shut) to `map_y`, the face region's source rows."""
        lid = self.upper + self.gap * amount  # where the lid's edge is drawn, per column
        span = np.maximum(lid - self.skin_top, 1e-3)
        stretched = self.skin_top + (self.rows - self.skin_top) * ((self.upper - self.skin_top) / span)
        covered = (self.rows >= self.skin_top) & (self.rows < lid) & (self.gap > 0)
        pull = np.where(covered, stretched - self.rows, np.float32(0.0))
        map_y[self.rect.inside(self._face)] += pull


class _Mouth:
    """The inside of the mouth, painted where the lips have parted.

    The gap's edges come from the displacement fields at the seam, per column: the upper lip's edge is drawn
    where the field just above the seam takes it, the lower lip's where the field just below does (a
    fraction of a pixel is a fraction of coverage, so the edges are smooth at any slope).
    """

    def __init__(
        self, rig: FaceRig, base: Image, face: _Rect, fields: dict[str, tuple[Field | None, Field | None]],
        drop: float, frame_w: int, frame_h: int,
    ) -> None:  # fmt: skip
        self._face = face
        (lx, _), (rx, _) = rig.corners
        top = float(np.min(rig.upper_outer[:, 1])) - drop * UPPER_LIP_LIFT - 2
        bottom = float(np.max(rig.lower_outer[:, 1])) + drop + 2
        pad = rig.mouth_width * SPREAD * 1.4 + 2
        self.rect = rect = _Rect.around(lx - pad, top, rx + pad, bottom, frame_w, frame_h).within(face)
        xs = np.arange(rect.left, rect.right, dtype=np.float64)
        self.xs = xs
        self.seam = seam(rig, xs)
        self.rows = np.arange(rect.top, rect.bottom, dtype=np.float32)[:, None]
        self.center = (lx + rx) / 2
        self.half_width = max((rx - lx) / 2, 1.0)
        u = np.clip((xs - self.center) / self.half_width, -1.0, 1.0).astype(np.float32)
        self.u = u
        self.tongue_across = np.clip((0.85 - np.abs(u)) * 6, 0.0, 1.0)
        self.lower_across = np.clip((0.6 - np.abs(u)) * 5, 0.0, 1.0)
        self.corner_light = 1.0 - 0.7 * np.abs(u) ** 2.5
        width = rig.mouth_width
        # What the photo shows between its lips (teeth when it smiles) stays above the seam.
        shown = float(np.max(self.seam - along(rig.upper_inner, xs)))
        self.teeth_height = max(0.0, 0.1 * width - shown)
        self.lower_teeth = 0.05 * width
        self.colors = _mouth_colors(rig, base)
        # The fields on the rows either side of the seam, per column of this region.
        region_cols = np.arange(rect.left - face.left, rect.right - face.left)
        below = np.clip(np.ceil(self.seam).astype(int) - face.top, 1, face.shape[0] - 2)
        above = below - 1

        def at(field: Field | None, rows: npt.NDArray[np.int_]) -> Floats:
            if field is None:
                return np.zeros(len(xs))
            return field[rows, region_cols].astype(np.float64)

        self.edges = {
            name: (at(fy, above), at(fy, below), at(fy, below + 1) - at(fy, below), at(fx, below))
            for name, (fx, fy) in fields.items()
        }

    def edges_at(self, amounts: dict[str, float]) -> tuple[Floats, Floats]:
        """The upper and lower lips' edges (frame rows) over each column, for these field amounts."""
        up = np.zeros(len(self.xs))
        down = np.zeros(len(self.xs))
        slope = np.zeros(len(self.xs))
        shift = np.zeros(len(self.xs))
        for name, amount in amounts.items():
            if amount > 0.0:
                above, below, gradient, along_x = self.edges[name]
                up += amount * above
                down += amount * below
                slope += amount * gradient
                shift += amount * along_x
        source = self.xs - shift  # the column of the photo each column shows, at the seam
        stretch = np.maximum(1.0 - np.interp(source, self.xs, slope), 0.2)
        base = np.interp(source, self.xs, self.seam)
        return (
            base + np.interp(source, self.xs, up) / stretch,
            base + np.interp(source, self.xs, down) / stretch,
        )

    def paint(self, region: Image, amounts: dict[str, float], scratch: _Scratch) -> None:
        """Paint the mouth's inside over `region` (the face region, already warped) between the lips.

        Back to front, each layer with soft edges: the throat (darkest where deepest), the tongue, the lower
        teeth, the upper teeth; then the corners in the cheeks' shadow. Per-column values are 1-D; the
        per-pixel work happens in this thread's scratch buffers."""
        top, bottom = self.edges_at(amounts)
        if float(np.max(bottom - top)) < 0.25:
            return
        h, w = self.rect.shape

        def buffer(name: str) -> Field:
            return scratch.get(("mouth", name), (h, w), np.float32)

        top_c, bottom_c = top.astype(np.float32), bottom.astype(np.float32)
        height = np.maximum(bottom_c - top_c, 1.0)
        u2 = self.u * self.u
        below, above = buffer("below"), buffer("above")  # how far under the upper lip, over the lower
        np.subtract(self.rows, top_c, out=below)
        np.subtract(bottom_c, self.rows, out=above)
        inside = buffer("inside")  # how far from the nearer lip
        np.minimum(below, above, out=inside)
        alpha = buffer("alpha")  # coverage: a pixel half over a lip's edge is half painted
        _unit(np.add(inside, 0.5, out=alpha))
        alpha *= np.minimum(np.maximum(bottom_c - top_c, 0.0), 1.0)  # a gap under a pixel covers that much
        # The layers' weights and lights, each in as few array operations as will do (on a mouth's few
        # thousand pixels, each costs its call more than its arithmetic).
        throat = buffer("throat")  # 1 at the lips, 0.5 deepest
        _unit(np.multiply(inside, 1.0 / (height * 0.5 + 1.0), out=throat))
        throat *= -0.5
        throat += 1.0
        tongue_top = height * 0.4 * (1.0 - 0.6 * u2)
        tongue, tongue_light = buffer("tongue"), buffer("tongue_light")
        _unit(np.subtract(tongue_top, above, out=tongue))
        tongue *= self.tongue_across
        np.multiply(above, -0.35 / (tongue_top + 1e-3), out=tongue_light)  # 0.9 at the lip, 0.55 deep in
        tongue_light += 0.9
        np.minimum(np.maximum(tongue_light, 0.55, out=tongue_light), 0.9, out=tongue_light)
        lower = buffer("lower")
        _unit(np.subtract(np.minimum(self.lower_teeth, height * 0.15), above, out=lower))
        lower *= self.lower_across
        reach = np.maximum(self.teeth_height, amounts.get("bite", 0.0) * height) * (1.0 - 0.6 * u2)
        upper, upper_light = buffer("upper"), buffer("upper_light")
        _unit(np.subtract(reach, below, out=upper))
        np.multiply(below, -0.3 / (reach + 1e-3), out=upper_light)  # 1 at the lip, 0.7 at the teeth's edge
        upper_light += 1.0
        np.minimum(np.maximum(upper_light, 0.7, out=upper_light), 1.0, out=upper_light)
        # Layer over layer is linear in the colours: each pixel is a weighted sum of the throat's, the
        # tongue's, the lower and the upper teeth's colours, with weights shared by the three channels. So
        # the weights are worked out once, on one channel's worth of pixels, and one matrix product gives
        # the colours (three channels one after another cost three times the array operations).
        weights = scratch.get(("mouth", "weights"), (h, w, 4), np.float32)
        throat_w, tongue_w, lower_w, upper_w = (weights[..., i] for i in range(4))
        keep = buffer("keep")  # how much of what is behind shows through the layers in front
        np.subtract(1.0, upper, out=keep)
        np.multiply(upper_light, upper, out=upper_w)
        np.multiply(lower, keep, out=lower_w)
        keep *= 1.0 - lower
        np.multiply(tongue_light, tongue, out=tongue_w)
        tongue_w *= keep
        keep *= 1.0 - tongue
        np.multiply(throat, keep, out=throat_w)
        shade = buffer("shade")
        np.multiply(alpha, self.corner_light, out=shade)  # the picture's share goes where the gap does
        weights *= shade[..., None]
        c = self.colors
        colors = np.stack([c.throat, c.tongue, c.teeth * 0.5, c.teeth])  # (4 layers, 3 channels)
        painted = scratch.get(("mouth", "painted"), (h * w, 3), np.float32)
        np.matmul(weights.reshape(h * w, 4), colors, out=painted)
        # target = target * (1 - alpha) + painted (already weighted by alpha)
        target = region[self.rect.inside(self._face)]
        mixed = scratch.get(("mouth", "mixed"), (h, w, 3), np.float32)
        np.subtract(1.0, alpha, out=keep)
        np.multiply(target, keep[..., None], out=mixed)
        mixed += painted.reshape(h, w, 3)
        mixed += 0.5
        np.copyto(target, np.minimum(np.maximum(mixed, 0.0, out=mixed), 255.0, out=mixed), casting="unsafe")


def _unit(values: Field) -> Field:
    """Clamp to [0, 1] in place (two ufunc calls: np.clip costs several times as much on small arrays)."""
    np.maximum(values, 0.0, out=values)
    np.minimum(values, 1.0, out=values)
    return values


@attrs.frozen
class _MouthColors:
    teeth: Floats
    tongue: Floats
    throat: Floats


def _mouth_colors(rig: FaceRig, base: Image) -> _MouthColors:
    """Teeth, tongue and throat in the photo's own light: the teeth it shows, when its lips are parted, and
    the lips' colour, darkened, for the tongue."""
    h, w = base.shape[:2]
    (lx, _), (rx, _) = rig.corners
    xs = np.linspace(lx + (rx - lx) * 0.3, rx - (rx - lx) * 0.3, 9)

    def pixels(upper: Floats, lower: Floats) -> Floats:
        found = [
            base[y, int(np.clip(round(x), 0, w - 1))]
            for x, a, b in zip(xs, upper, lower, strict=True)
            for y in range(int(np.ceil(a)), int(np.floor(b)) + 1)
            if 0 <= y < h
        ]
        return np.array(found, np.float64).reshape(-1, 3)

    lips = np.concatenate(
        [
            pixels(along(rig.upper_outer, xs) + 1, along(rig.upper_inner, xs) - 1),
            pixels(along(rig.lower_inner, xs) + 1, along(rig.lower_outer, xs) - 1),
        ]
    )
    lip = np.median(lips, axis=0) if len(lips) else np.array([90.0, 95.0, 160.0])
    light = float(np.clip(lip.mean() / 110.0, 0.55, 1.25))
    teeth = np.array([118.0, 158.0, 200.0]) * light  # ivory: thin cool bands beside red lips read green
    gap = pixels(along(rig.upper_inner, xs) + 0.5, along(rig.lower_inner, xs) - 0.5)
    if len(gap) >= 12:
        luma = gap.mean(axis=1)
        bright = gap[luma >= np.percentile(luma, 60)]
        color = np.median(bright, axis=0)
        if color.mean() > 100 and color.max() - color.min() < 70:  # teeth: light and nearly grey
            teeth = color * 0.92
    return _MouthColors(
        teeth=teeth.astype(np.float32),
        tongue=(lip * np.array([0.5, 0.5, 0.78])).astype(np.float32),
        throat=(np.array([24.0, 18.0, 40.0]) * light).astype(np.float32),
    )


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
        if portrait.landmarks is not None:
            rig = FaceRig.from_landmarks(portrait.landmarks, geometry.map_points)
        else:
            rig = FaceRig.from_boxes(portrait.face, portrait.eyes, portrait.mouth, geometry.map_points)
        self.rig = rig
        self._face_size = face_h = max(rig.face_height, 8.0)
        self._drop = max(2.0, face_h * JAW_DROP)

        # The face region: brows (with the forehead above them) down to the neck under the chin.
        ovals = rig.oval
        self._face = face = _Rect.around(
            float(ovals[:, 0].min()) - rig.face_width * 0.08,
            float(min(e.brow[:, 1].min() for e in rig.eyes)) - face_h * 0.2,
            float(ovals[:, 0].max()) + rig.face_width * 0.08,
            rig.chin[1] + face_h * 0.3,
            self.width,
            self.height,
        )
        self._face_still = np.ascontiguousarray(self.base[face.top : face.bottom, face.left : face.right])
        gx, gy = face.grid()
        self._grid_x = (gx - face.left).astype(np.float32)  # the maps are in the region's own pixels
        self._grid_y = (gy - face.top).astype(np.float32)
        self._fields = self._mouth_fields(gx, gy)
        self._brow = self._brow_field(gx, gy)
        self._lids = [_Eyelid(eye, face, self.width, self.height) for eye in rig.eyes]
        self._mouth = _Mouth(rig, self.base, face, self._fields, self._drop, self.width, self.height)

        # Head motion: the head and neck turn about the neck's base, weighted so nothing else moves.
        self.motion = max(0.0, motion)
        self._head = head = _Rect.around(
            float(ovals[:, 0].min()) - rig.face_width * 0.35,
            float(ovals[:, 1].min()) - face_h * 0.6,
            float(ovals[:, 0].max()) + rig.face_width * 0.35,
            rig.chin[1] + face_h * 0.75,
            self.width,
            self.height,
        )
        self._head_still = np.ascontiguousarray(self.base[head.top : head.bottom, head.left : head.right])
        self._head_fields = self._head_weights(head)
        hx, hy = head.grid()
        self._head_grid = ((hx - head.left).astype(np.float32), (hy - head.top).astype(np.float32))
        self._scratch = threading.local()  # each thread that draws frames has its own work buffers

        rng = np.random.default_rng(seed)
        phases = rng.uniform(0, 2 * np.pi, 4)
        self._phases = tuple(float(p) for p in phases)
        # Blinks every 3-5 s; the schedule repeats after BLINK_CYCLE seconds.
        gaps = rng.uniform(*BLINK_GAP, size=int(BLINK_CYCLE / BLINK_GAP[0]) + 1)
        starts = np.cumsum(gaps)
        self._blink_starts: npt.NDArray[np.float64] = starts[starts < BLINK_CYCLE - BLINK_GAP[0]]

    # -- set-up ------------------------------------------------------------------------------------------

    def _mouth_fields(self, gx: Floats, gy: Floats) -> dict[str, tuple[Field | None, Field | None]]:
        """Unit displacement fields (x, y) of the face region, by what moves them: the jaw, spreading,
        rounding, the lower lip to the teeth. A pixel at p shows the photo at p - amount * field."""
        rig, face_h = self.rig, self._face_size
        (lx, _), (rx, _) = rig.corners
        cx, half = (lx + rx) / 2, max((rx - lx) / 2, 1.0)
        xs = gx[0]
        seam_y = seam(rig, xs)[None, :]
        u = (gx - cx) / half
        lens = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.6
        lower = gy >= seam_y
        up_thick = np.maximum(seam_y - along(rig.upper_outer, xs)[None, :], 1.0)
        low_thick = np.maximum(along(rig.lower_outer, xs)[None, :] - seam_y, 1.0)
        chin_y = rig.chin[1]
        seam_c = float(seam(rig, np.array([cx]))[0])
        reach = max(chin_y - seam_c, 4.0)

        # The jaw: the chin drops the whole way, the lower lip most of it; the cheeks stretch to the jawline;
        # the neck under the chin gives way. The upper lip rises a little. The lips part at the seam.
        left, right = self._jaw_extent(gy[:, 0], chin_y, face_h)
        mid = ((left + right) / 2)[:, None]
        half_jaw = np.maximum((right - left) / 2, 2.0)[:, None]
        across = _smoothstep((half_jaw - np.abs(gx - mid)) / (0.45 * half_jaw))
        deeper = _smoothstep((gy - seam_y) / (0.55 * reach))
        turn = 0.85 + 0.15 * np.clip((gy - seam_c) / reach, 0.0, 1.0)
        neck = 1.0 - _smoothstep((gy - chin_y) / (0.22 * face_h))
        down = np.maximum(LOWER_LIP_SHARE * lens, across * deeper * turn) * neck
        up = -UPPER_LIP_LIFT * lens * (1.0 - _smoothstep((seam_y - gy) / (2.0 * up_thick + 0.04 * face_h)))
        jaw = np.where(lower, down, up) * self._drop

        # Spread and round: the lips and the skin around them stretch out from, or gather to, the middle;
        # spread lips thin, rounded lips push out and grow taller.
        # The weight falls off over about a mouth's half-width in every direction: a steeper fall (a smile's
        # lips are thin for their width) shears the skin so fast that the picture folds into creases.
        lips_half = float(np.max(along(rig.lower_outer, xs) - along(rig.upper_outer, xs))) / 2 + 0.02 * face_h
        ring = np.sqrt((u / 1.1) ** 2 + ((gy - seam_y) / max(lips_half, 0.6 * half)) ** 2)
        near = 1.0 - _smoothstep((ring - 1.0) / 0.9)
        # Only the face stretches: the weight fades out across the face's outline (a turned face has a cheek
        # close to the mouth, and the background behind it must not be pulled in).
        within = self._inside_outline(face_h * 0.15)
        # How far each column moves, in units of a corner's move: linear through the lips, then smoothly
        # back to nothing out in the cheeks (a clipped ramp left a crease where it stopped).
        reach_x = u * np.exp(0.5 * (1.0 - u * u) / 1.44)
        stretch = reach_x * near * within * rig.mouth_width * SPREAD
        lips = 1.0 - _smoothstep((np.abs(gy - seam_y) / lips_half - 1.0) / 0.9)  # the lips' own height
        spread_y = -0.25 * (gy - seam_y) * near * lips * within
        round_y = 0.22 * (gy - seam_y) * near * lips * within * (1.0 - _smoothstep((np.abs(u) - 0.5) / 0.8))

        # The lower lip to the upper teeth: the upper lip rises off them, the lower lip tucks up.
        # Where the photo already shows the upper teeth, the upper lip stays on them.
        shown = float(np.max(seam(rig, xs) - along(rig.upper_inner, xs)))
        center_up = float(np.max(up_thick)) * max(0.0, 1.0 - shown / (0.1 * rig.mouth_width))
        bite = np.where(
            lower,
            -0.3 * low_thick * lens * (1.0 - _smoothstep((gy - seam_y) / (2.5 * low_thick))),
            -0.75 * center_up * np.sqrt(lens) * (1.0 - _smoothstep((seam_y - gy) / (2.5 * up_thick))),
        )

        # Lips pressed together (m, b, p): each lip's red stretches to the seam over whatever the photo
        # shows between them (a smile's teeth), and both roll in a little.
        up_out, low_out = along(rig.upper_outer, xs)[None, :], along(rig.lower_outer, xs)[None, :]
        up_in, low_in = along(rig.upper_inner, xs)[None, :], along(rig.lower_inner, xs)[None, :]
        from_above = np.clip((gy - (up_out - up_thick)) / np.maximum(seam_y - (up_out - up_thick), 1.0), 0, 1)
        from_below = np.clip(
            ((low_out + low_thick) - gy) / np.maximum((low_out + low_thick) - seam_y, 1.0), 0, 1
        )
        roll = 0.1 * lens
        press = np.where(
            lower,
            -from_below * (np.maximum(low_in - seam_y, 0.0) + roll * low_thick),
            from_above * (np.maximum(seam_y - up_in, 0.0) + roll * up_thick),
        )

        def f32(field: Floats) -> Field:
            return np.ascontiguousarray(field, dtype=np.float32)

        return {
            "press": (None, f32(press)),
            "jaw": (f32(-0.4 * stretch), f32(jaw)),  # the corners draw in a little as the jaw drops
            "spread": (f32(_gentle(stretch)), f32(_gentle(spread_y))),
            "round": (f32(_gentle(-1.2 * stretch)), f32(_gentle(round_y))),
            "bite": (None, f32(bite)),
        }

    def _inside_outline(self, fade: float) -> Floats:
        """1 well inside the face's outline, fading to 0 over `fade` pixels inside it (the face region)."""
        face = self._face
        mask = np.zeros(face.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(self.rig.oval - (face.left, face.top)).astype(np.int32)], 1)
        inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3).astype(np.float64)
        return _smoothstep(inside / max(fade, 1.0))

    def _jaw_extent(self, rows: Floats, chin_y: float, face_h: float) -> tuple[Floats, Floats]:
        """The face outline's left and right x on each row; under the chin, those of a row a little above."""
        face = self._face
        mask = np.zeros(face.shape, np.uint8)
        outline = np.round(self.rig.oval - (face.left, face.top)).astype(np.int32)
        cv2.fillPoly(mask, [outline], 1)
        hold = chin_y - 0.12 * face_h
        filled = mask.any(axis=1)
        cols = np.arange(face.shape[1], dtype=np.float64)
        left = np.where(filled, np.where(mask, cols, np.inf).min(axis=1), np.nan)
        right = np.where(filled, np.where(mask, cols, -np.inf).max(axis=1), np.nan)
        rows_held = np.clip(np.minimum(rows, hold), rows[0], rows[-1])
        good = ~np.isnan(left)
        if not good.any():
            return np.full_like(rows, face.left), np.full_like(rows, face.right)
        left_at = np.interp(rows_held, rows[good], left[good]) + face.left
        right_at = np.interp(rows_held, rows[good], right[good]) + face.left
        return left_at, right_at

    def _brow_field(self, gx: Floats, gy: Floats) -> Field:
        """Unit lift of the brows: full at the brow, none at the upper lid or high on the forehead."""
        lift = np.zeros_like(gx)
        for eye in self.rig.eyes:
            xs = gx[0]
            brow, lid = along(eye.brow, xs)[None, :], along(eye.upper, xs)[None, :]
            gap = np.maximum(lid - brow, 2.0)
            between = np.clip((lid - gy) / gap, 0.0, 1.0)
            above = 1.0 - _smoothstep((brow - gy) / (1.6 * gap))
            vertical = np.where(gy >= brow, _smoothstep(between), above)
            x0, x1 = float(eye.brow[:, 0].min()), float(eye.brow[:, 0].max())
            span = max(x1 - x0, 2.0)
            beyond = np.maximum(x0 - gx, gx - x1).clip(min=0.0)
            lateral = 1.0 - _smoothstep(beyond / (0.35 * span))
            lift = np.maximum(lift, vertical * lateral)
        return np.ascontiguousarray(-lift * BROW_LIFT * self._face_size, dtype=np.float32)

    def _head_weights(self, head: _Rect) -> tuple[Field, Field, Field]:
        """How much each pixel of the head region follows the head: 1 on the face and the hair above it,
        fading down the neck to its base and out into the background. And the rotation's unit field."""
        rig, face_h = self.rig, self._face_size
        center = rig.oval.mean(axis=0)
        grown = rig.oval - center
        grown[:, 0] *= 1.12
        grown[:, 1] *= np.where(grown[:, 1] < 0, 1.4, 1.0)
        drawn = np.zeros(head.shape, np.float32)
        cv2.fillPoly(drawn, [np.round(grown + center - (head.left, head.top)).astype(np.int32)], 1.0)
        chin_x, chin_y = rig.chin
        neck_half = rig.face_width * 0.3
        neck = np.array(
            [
                [chin_x - neck_half, chin_y - face_h * 0.15],
                [chin_x + neck_half, chin_y - face_h * 0.15],
                [chin_x + neck_half, head.bottom],
                [chin_x - neck_half, head.bottom],
            ]
        )
        cv2.fillPoly(drawn, [np.round(neck - (head.left, head.top)).astype(np.int32)], 1.0)
        mask = cv2.GaussianBlur(drawn, (0, 0), max(face_h * 0.06, 1.0)).astype(np.float64)
        hx, hy = head.grid()
        pivot_y = chin_y + face_h * 0.7
        bend = np.clip((pivot_y - hy) / (pivot_y - chin_y), 0.0, 1.0)
        weight: Floats = mask * np.where(hy > chin_y, bend, 1.0)
        # A weight that reaches the region's edge would tear the frame there: fade it out before.
        edge = min(head.shape) * 0.04 + 2
        border = np.minimum.reduce([hx - head.left, head.right - 1 - hx, hy - head.top, head.bottom - 1 - hy])
        weight = weight * _smoothstep(border / edge)
        weight[weight < 1e-3] = 0.0
        turn_x = -(hy - pivot_y) * weight
        turn_y = (hx - chin_x) * weight

        def f32(field: Floats) -> Field:
            return np.ascontiguousarray(field, dtype=np.float32)

        return f32(weight), f32(turn_x), f32(turn_y)

    def blink_at(self, at: float) -> float:
        """How far the eyelids are closed `at` seconds into a talk, on this face's blink schedule."""
        t = at % BLINK_CYCLE
        index = int(np.searchsorted(self._blink_starts, t, side="right")) - 1
        if index < 0:
            return 0.0
        step = int((t - float(self._blink_starts[index])) / FRAME_SECONDS)
        return BLINK_SHAPE[step] if step < len(BLINK_SHAPE) else 0.0

    def head_pose(self, at: float, openness: float = 0.0) -> tuple[float, float, float]:
        """(dx, dy, degrees) of the head at time `at` seconds into a talk: slow sway, breath, a nod with
        speech; the angle turns the head about the neck's base."""
        if self.motion <= 0.0:
            return 0.0, 0.0, 0.0
        a, b, c, d = self._phases
        scale = self.motion * self._face_size / 100.0  # pixels per unit of motion, face-relative
        dx = scale * (1.2 * np.sin(2 * np.pi * 0.21 * at + a) + 0.4 * np.sin(2 * np.pi * 0.53 * at + b))
        breath = 0.5 * np.sin(2 * np.pi * at / BREATH_SECONDS + d)
        dy = scale * (0.6 * np.sin(2 * np.pi * 0.17 * at + b) + breath + 1.0 * openness)
        angle = self.motion * (
            1.2 * np.sin(2 * np.pi * 0.13 * at + c) + 0.3 * np.sin(2 * np.pi * 0.41 * at + a)
        )
        return float(dx), float(dy), float(angle)

    # -- frames ----------------------------------------------------------------------------------------------

    def still(self) -> Image:
        """The photo at the output size, I420, nothing moved."""
        return self._base_i420.copy()

    def frame(
        self,
        mouth: Mouth | float,
        at: float | None = None,
        *,
        blink: float | None = None,
        out: Image | None = None,
        motion: float = 1.0,
    ) -> Image:
        """One I420 frame: the `mouth` (a bare number: its openness in [0, 1]), the head, breath and eyelids
        as they are `at` seconds into a talk (None: at rest, eyes open). `blink` overrides the face's own
        blink schedule; `motion` scales the head's movement (a fluent stream's idle moves less).

        With `out` (an array shaped like `still()`), the frame is drawn there and returned; otherwise into a
        new array. Apart from `out`, nothing the size of the picture is allocated per frame.
        """
        if not isinstance(mouth, Mouth):
            mouth = Mouth(float(mouth))
        if blink is None:
            blink = self.blink_at(at) if at is not None else 0.0
        scratch: _Scratch | None = getattr(self._scratch, "buffers", None)
        if scratch is None:
            scratch = self._scratch.buffers = _Scratch()
        if out is None:
            out = self._base_i420.copy()
        else:
            np.copyto(out, self._base_i420)
        opening = min(max(mouth.open * self.mouth_gain, 0.0), 1.0)
        wide = min(max(mouth.wide, -1.0), 1.0)
        amounts = {
            "press": min(max(mouth.press, 0.0), 1.0),
            "jaw": opening,
            "spread": max(wide, 0.0),
            "round": max(-wide, 0.0),
            "bite": min(max(mouth.bite, 0.0), 1.0),
        }
        stress = min(max(mouth.stress, 0.0), 1.0)
        blink = min(max(blink, 0.0), 1.0)
        pose = self.head_pose(at, opening) if at is not None else (0.0, 0.0, 0.0)
        if motion != 1.0:
            scale = min(max(motion, 0.0), 1.0)
            pose = (pose[0] * scale, pose[1] * scale, pose[2] * scale)
        moving = abs(pose[0]) + abs(pose[1]) + abs(pose[2]) > 0.02
        face_moves = any(amounts.values()) or stress > 0.0 or blink > 0.0
        if not face_moves and not moving:
            return out
        face_pixels = self._face_still
        if face_moves:
            face_pixels = self._deform(amounts, stress, blink, scratch)
        if not moving:
            self._paste(out, face_pixels, self._face, scratch)
            return out
        head = scratch.get("head", self._head_still.shape, np.uint8)
        np.copyto(head, self._head_still)
        if face_moves:
            head[self._face.inside(self._head)] = face_pixels
        self._paste(out, self._turn_head(head, pose, scratch), self._head, scratch)
        return out

    def _deform(self, amounts: dict[str, float], stress: float, blink: float, scratch: _Scratch) -> Image:
        """The face region with the mouth (`amounts` of each of its fields), brows and eyelids moved, and the
        inside of the mouth painted."""
        map_x = scratch.get("map_x", self._grid_x.shape, np.float32)
        map_y = scratch.get("map_y", self._grid_y.shape, np.float32)
        np.copyto(map_x, self._grid_x)
        np.copyto(map_y, self._grid_y)
        for name, amount in amounts.items():
            if amount <= 0.0:
                continue
            field_x, field_y = self._fields[name]
            if field_x is not None:
                cv2.scaleAdd(field_x, -amount, map_x, dst=map_x)
            if field_y is not None:
                cv2.scaleAdd(field_y, -amount, map_y, dst=map_y)
        if stress > 0.0:
            cv2.scaleAdd(self._brow, -stress, map_y, dst=map_y)
        if blink > 0.0:
            for lid in self._lids:
                lid.add(map_y, blink)
        pixels = scratch.get("face", self._face_still.shape, np.uint8)
        cv2.remap(
            self._face_still, map_x, map_y, cv2.INTER_LINEAR, dst=pixels, borderMode=cv2.BORDER_REPLICATE
        )
        if amounts["jaw"] > 0.0 or amounts["bite"] > 0.0:
            self._mouth.paint(pixels, amounts, scratch)
        return pixels

    def _turn_head(self, head: Image, pose: tuple[float, float, float], scratch: _Scratch) -> Image:
        dx, dy, degrees = pose
        weight, turn_x, turn_y = self._head_fields
        grid_x, grid_y = self._head_grid
        map_x = scratch.get("head_x", grid_x.shape, np.float32)
        map_y = scratch.get("head_y", grid_y.shape, np.float32)
        theta = float(np.radians(degrees))
        cv2.scaleAdd(weight, -dx, grid_x, dst=map_x)
        cv2.scaleAdd(turn_x, -theta, map_x, dst=map_x)
        cv2.scaleAdd(weight, -dy, grid_y, dst=map_y)
        cv2.scaleAdd(turn_y, -theta, map_y, dst=map_y)
        moved = scratch.get("moved", head.shape, np.uint8)
        cv2.remap(head, map_x, map_y, cv2.INTER_LINEAR, dst=moved, borderMode=cv2.BORDER_REPLICATE)
        return moved

    def _paste(self, out: Image, pixels: Image, rect: _Rect, scratch: _Scratch) -> None:
        # The same conversion as the whole frame's, so the region matches its surroundings exactly.
        left, top, right, bottom = rect.left, rect.top, rect.right, rect.bottom
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
