"""Draws docs/visemes.png: the mouth shapes talkstream gives two portraits of the test set.

    .venv/bin/python docs/make_visemes.py

Each row is one photo (public-domain portraits from tests/portraits), each column a viseme as the speech
asks for it: at rest (the photo itself), closed (m b p), lip to teeth (f v), rounded (o u w), spread (i e),
open (a). Frames come from the animator at 512 px, as a stream gets them, cropped around the mouth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from talkstream.avatar.animator import Animator
from talkstream.avatar.portrait import load_portrait
from talkstream.engine.ports import Mouth

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ("grace_hopper.jpg", "obama.jpg")
VISEMES = (
    ("rest", Mouth()),
    ("m b p", Mouth(0.0, press=1.0)),
    ("f v", Mouth(0.1, bite=1.0)),
    ("o u w", Mouth(0.5, wide=-0.9)),
    ("i e", Mouth(0.5, wide=0.9)),
    ("a", Mouth(1.0, wide=0.1)),
)
TILE = 220


def row(photo: Path) -> np.ndarray:
    face = Animator(load_portrait(photo.read_bytes()), resolution=512, motion=0.0)
    (lx, ly), (rx, ry) = face.rig.corners
    side = round(face.rig.mouth_width * 2.3)
    x0 = int(min(max((lx + rx) / 2 - side / 2, 0), face.width - side))
    y0 = int(min(max((ly + ry) / 2 - side * 0.42, 0), face.height - side))
    tiles = []
    for _, mouth in VISEMES:
        picture = cv2.cvtColor(face.frame(mouth), cv2.COLOR_YUV2BGR_I420)[y0 : y0 + side, x0 : x0 + side]
        tiles.append(cv2.resize(picture, (TILE, TILE), interpolation=cv2.INTER_CUBIC))
    return np.hstack(tiles)


def main() -> int:
    header = np.full((34, TILE * len(VISEMES), 3), 255, np.uint8)
    for k, (label, _) in enumerate(VISEMES):
        cv2.putText(
            header, label, (k * TILE + 8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (40, 40, 40), 2, cv2.LINE_AA
        )
    sheet = np.vstack([header] + [row(ROOT / "tests" / "portraits" / name) for name in PORTRAITS])
    target = ROOT / "docs" / "visemes.png"
    cv2.imwrite(str(target), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {target} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
