"""The parts of a face the animator moves, as curves in the output frame's pixels: the lips' inner and outer
lines, the eyelids, the brows, the face's outline, chin and nose. Made from the face mesh's 468 landmarks,
or, when only OpenCV's cascades found the face, drawn from their boxes.

What it must never do: depend on the photo's pixels (only on where its features are).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
import numpy.typing as npt

from .portrait import Box

__all__ = ["Curve", "EyeRig", "FaceRig", "along", "seam"]

Curve = npt.NDArray[np.float64]  # points (x, y) in order, left to right where that means anything

# MediaPipe face mesh indices, image left to image right.
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# The subject's right eye is on the image's left.
EYES = (
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    ((362, 398, 384, 385, 386, 387, 388, 466, 263), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
)
BROWS = ((46, 53, 52, 65, 55), (285, 295, 282, 283, 276))  # lower edges, image left to right
CHIN, NOSE_TIP, FOREHEAD = 152, 1, 10


@attrs.frozen
class EyeRig:
    """One eye: its upper and lower lid lines (corner to corner) and the brow's lower edge above it."""

    upper: Curve
    lower: Curve
    brow: Curve

    @property
    def width(self) -> float:
        return float(self.upper[-1, 0] - self.upper[0, 0])

    @property
    def opening(self) -> float:
        """The eye's greatest height, lid to lid."""
        xs = np.linspace(self.upper[0, 0], self.upper[-1, 0], 9)
        return float(np.max(along(self.lower, xs) - along(self.upper, xs)))


@attrs.frozen
class FaceRig:
    """Where the animated features are, in output pixels."""

    upper_inner: Curve
    lower_inner: Curve
    upper_outer: Curve
    lower_outer: Curve
    eyes: tuple[EyeRig, EyeRig]
    oval: Curve  # closed outline, forehead to chin and back
    chin: tuple[float, float]
    nose: tuple[float, float]
    from_mesh: bool

    @property
    def corners(self) -> tuple[tuple[float, float], tuple[float, float]]:
        (lx, ly), (rx, ry) = self.upper_outer[0], self.upper_outer[-1]
        return (float(lx), float(ly)), (float(rx), float(ry))

    @property
    def mouth_width(self) -> float:
        (lx, _), (rx, _) = self.corners
        return max(rx - lx, 2.0)

    @property
    def face_height(self) -> float:
        return float(self.oval[:, 1].max() - self.oval[:, 1].min())

    @property
    def face_width(self) -> float:
        return float(self.oval[:, 0].max() - self.oval[:, 0].min())

    @classmethod
    def from_landmarks(cls, points: npt.NDArray[np.float32], to_frame: Transform) -> FaceRig:
        mapped = to_frame(points.astype(np.float64))

        def curve(indices: tuple[int, ...]) -> Curve:
            return np.ascontiguousarray(mapped[list(indices)])

        eyes = tuple(
            EyeRig(upper=curve(upper), lower=curve(lower), brow=curve(brow))
            for (upper, lower), brow in zip(EYES, BROWS, strict=True)
        )
        return cls(
            upper_inner=_monotonic(curve(UPPER_INNER_LIP)),
            lower_inner=_monotonic(curve(LOWER_INNER_LIP)),
            upper_outer=_monotonic(curve(UPPER_OUTER_LIP)),
            lower_outer=_monotonic(curve(LOWER_OUTER_LIP)),
            eyes=(eyes[0], eyes[1]),
            oval=curve(FACE_OVAL),
            chin=(float(mapped[CHIN, 0]), float(mapped[CHIN, 1])),
            nose=(float(mapped[NOSE_TIP, 0]), float(mapped[NOSE_TIP, 1])),
            from_mesh=True,
        )

    @classmethod
    def from_boxes(cls, face: Box, eyes: tuple[Box, Box], mouth: Box, to_frame: Transform) -> FaceRig:
        """Curves drawn from the cascades' boxes: lips as two arcs meeting at a straight seam, eyes as lenses
        in the middle of their boxes, the face as an ellipse."""
        t = np.linspace(0.0, 1.0, 11)
        bump = np.sin(np.pi * t)
        x = mouth.x + mouth.w * t
        seam = mouth.y + mouth.h * 0.5
        upper_outer = np.stack([x, seam - bump * mouth.h * 0.5], axis=1)
        lower_outer = np.stack([x, seam + bump * mouth.h * 0.5], axis=1)
        inner = np.stack([mouth.x + mouth.w * (0.04 + 0.92 * t), np.full_like(t, seam)], axis=1)
        eye_rigs = []
        for eye in eyes:
            ex = eye.x + eye.w * (0.15 + 0.7 * t[::2])
            mid = eye.y + eye.h * 0.5
            lens = np.sin(np.pi * t[::2])
            eye_rigs.append(
                EyeRig(
                    upper=to_frame(np.stack([ex, mid - lens * eye.h * 0.16], axis=1)),
                    lower=to_frame(np.stack([ex, mid + lens * eye.h * 0.12], axis=1)),
                    brow=to_frame(np.stack([ex, np.full_like(ex, eye.y + eye.h * 0.05)], axis=1)),
                )
            )
        angles = np.linspace(-np.pi / 2, 3 * np.pi / 2, 36, endpoint=False)
        cx, cy = face.x + face.w / 2, face.y + face.h * 0.55
        oval = np.stack([cx + face.w * 0.47 * np.cos(angles), cy + face.h * 0.6 * np.sin(angles)], axis=1)
        chin, nose = to_frame(np.array([[cx, cy + face.h * 0.6], [cx, face.y + face.h * 0.62]]))
        return cls(
            upper_inner=to_frame(inner),
            lower_inner=to_frame(inner.copy()),
            upper_outer=to_frame(upper_outer),
            lower_outer=to_frame(lower_outer),
            eyes=(eye_rigs[0], eye_rigs[1]),
            oval=to_frame(oval),
            chin=(float(chin[0]), float(chin[1])),
            nose=(float(nose[0]), float(nose[1])),
            from_mesh=False,
        )


Transform = Callable[[Curve], Curve]


def along(curve: Curve, xs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The curve's y at each x (held flat past its ends)."""
    return np.interp(xs, curve[:, 0], curve[:, 1])


def seam(rig: FaceRig, xs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Where the lips part, per column (flat past the corners): where they meet, or, when the photo shows
    the teeth between them, near the lower lip, so that the teeth the photo shows stay with the upper jaw."""
    upper, lower = along(rig.upper_inner, xs), along(rig.lower_inner, xs)
    out: npt.NDArray[np.float64] = upper + (lower - upper) * np.where(lower - upper > 1.5, 0.8, 0.5)
    return out


def _monotonic(curve: Curve) -> Curve:
    """The curve with x never going back (the mesh can fold a lip line by a fraction of a pixel at a
    corner), so that it reads as a function of x."""
    out = curve.copy()
    out[:, 0] = np.maximum.accumulate(out[:, 0])
    return out
