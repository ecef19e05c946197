"""Do the real lips move with the sound? A face tracker's view of the received video.

    .venv/bin/python bench/lip_tracking.py [--json PATH]

`talkstream serve` runs in its own process with tests/portraits as its media folder; for each of three
portraits (the bundled one, grace_hopper with glasses and closed lips, obama smiling with his teeth shown) a
client connects, asks for a ~12 s text talk spoken by espeak-ng, and keeps every frame and sample it
receives. A face tracker (the 468-point face mesh, run afresh on every received frame: it knows nothing of
the animator) measures the lips' inner opening (landmark 13 to 14) as a share of the face's height (10 to
152). Against it: the received audio's loudness per frame (dB, 40 ms centred on the frame's media time).

Reported per portrait: the opening's range over the talk (5th to 95th percentile, % of face height), the
correlation of opening with loudness at the best lag within +-200 ms and that lag (positive: the mouth
trails the sound), and the opening once the talk is over against the photo's own. Before the face was
driven by landmarks, a tracker saw the opening change by 0.2-1.6 % of the face's height, unrelated to
the sound.

Targets: a range of at least 4 % of the face's height, a correlation of at least 0.4, |lag| within one
frame (40 ms). (Lips do not follow loudness one for one, in people either: an "ee" is loud with the lips
nearly shut, an "m" is voiced with them closed; the correlation says the two rise and fall together.)
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from served import bench_main, machine, served  # bench/served.py, beside this file

from talkstream.adapters.http.network import AiohttpAdapter
from talkstream.avatar.landmarks import find_face
from talkstream.engine.client import StreamClient
from talkstream.engine.retry import RetryPolicy
from talkstream.transports.aiortc_client import AiortcClientTransport
from talkstream.transports.sink import MediaSink

PORTRAITS = Path(__file__).resolve().parents[1] / "tests" / "portraits"
SOURCES = {
    "bundled": "bundled:astronaut",
    "grace_hopper": (PORTRAITS / "grace_hopper.jpg").as_uri(),
    "obama": (PORTRAITS / "obama.jpg").as_uri(),
}
TEXT = (
    "Hello, and welcome. I am a photo that speaks, with my own lips and jaw. "
    "Do you see how my mouth opens wide for an ah, rounds for an oo, and spreads for an ee? "
    "Maybe, by and by, we will make many more. Thank you for watching me move."
)
LAGS = range(-5, 6)  # frames: +-200 ms


class Frames(MediaSink):
    """Keeps every received frame (BGR) and the audio's loudness per 20 ms frame, with media times."""

    def __init__(self) -> None:
        super().__init__()
        self.pictures: list[tuple[float, npt.NDArray[np.uint8]]] = []
        self.loudness: list[tuple[float, float, int]] = []  # (media time, mean square, samples)

    def add_video(self, frame: av.VideoFrame) -> None:
        super().add_video(frame)
        self.pictures.append(
            (float(frame.time or 0.0), np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
        )

    def add_audio(self, frame: av.AudioFrame) -> None:
        super().add_audio(frame)
        samples = frame.to_ndarray().astype(np.float64).reshape(-1, len(frame.layout.channels))[:, 0]
        self.loudness.append((float(frame.time or 0.0), float((samples**2).mean()), len(samples)))


def openings(frames: Frames) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(media times, inner-lip opening / face height) of every frame the tracker found a face in."""
    times, values = [], []
    hint = None
    for at, picture in sorted(frames.pictures, key=lambda p: p[0]):
        found = find_face(picture, hint=hint)
        if found is None:
            continue
        p = found.points
        face_height = float(p[152, 1] - p[10, 1])
        times.append(at)
        values.append(float(p[14, 1] - p[13, 1]) / face_height)
        x0, y0 = p.min(axis=0)
        x1, y1 = p.max(axis=0)
        hint = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    return np.array(times), np.array(values)


def loudness_at(frames: Frames, times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The audio's level (dB under its loudest, floored at -40) over the 40 ms centred on each time."""
    audio = sorted(frames.loudness)
    starts = np.array([a for a, _, _ in audio])
    power = np.array([p for _, p, _ in audio])
    level = np.empty(len(times))
    for i, t in enumerate(times):
        near = (starts >= t - 0.03) & (starts < t + 0.01)  # the two 20 ms frames around t
        level[i] = power[near].mean() if near.any() else 0.0
    db = 10 * np.log10(level + 1e-3)
    out: npt.NDArray[np.float64] = np.maximum(db - db.max(), -40.0)
    return out


def analyse(frames: Frames, still: float) -> dict[str, Any]:
    times, opening = openings(frames)
    level = loudness_at(frames, times)
    talking = level > -40.0
    span = slice(int(np.argmax(talking)), len(talking) - int(np.argmax(talking[::-1])))
    o, v = opening[span], level[span]
    best = max(LAGS, key=lambda lag: _correlation(o, v, lag))
    return {
        "frames": len(frames.pictures),
        "tracked": len(times),
        "opening_pct": {
            "p5": round(float(np.percentile(o, 5)) * 100, 2),
            "p95": round(float(np.percentile(o, 95)) * 100, 2),
            "range": round(float(np.percentile(o, 95) - np.percentile(o, 5)) * 100, 2),
        },
        "correlation": round(_correlation(o, v, best), 3),
        "correlation_at_0": round(_correlation(o, v, 0), 3),
        "lag_ms": best * 40,
        "after_talk_pct": round(float(opening[-1]) * 100, 2),  # the face at rest, once the talk is over
        "photo_pct": round(still * 100, 2),
        "series": {
            "media_s": [round(float(t), 3) for t in times],
            "opening_pct": [round(float(x) * 100, 2) for x in opening],
            "level_db": [round(float(x), 1) for x in level],
        },
    }


def _correlation(opening: npt.NDArray[np.float64], level: npt.NDArray[np.float64], lag: int) -> float:
    """Pearson correlation of the opening `lag` frames after the sound with the sound."""
    if lag >= 0:
        a, b = opening[lag:], level[: len(level) - lag]
    else:
        a, b = opening[:lag], level[-lag:]
    if len(a) < 10 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def photo_opening(source: str) -> float:
    import cv2

    from talkstream.avatar.portrait import bundled_portrait_bytes

    data = bundled_portrait_bytes() if source.startswith("bundled:") else Path(source[7:]).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    found = find_face(image)
    assert found is not None
    p = found.points
    return float(p[14, 1] - p[13, 1]) / float(p[152, 1] - p[10, 1])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = {}
    async with served("--media-root", str(PORTRAITS)) as server:
        for name, source in SOURCES.items():
            frames = Frames()
            client = StreamClient(
                AiohttpAdapter(server.base, server.key), AiortcClientTransport(), retry=RetryPolicy.none()
            )
            async with client:
                stream = await client.create(source, sink=frames, driver_url="bank://subtle")
                await stream.connected(within=30)
                talk = await stream.talk(text=TEXT)
                await talk.done(within=120)
                await asyncio.sleep(0.5)  # the last frames in flight
                await stream.close()
            rows[name] = await asyncio.to_thread(analyse, frames, photo_opening(source))
    met = all(
        r["opening_pct"]["range"] >= 4.0 and r["correlation"] >= 0.4 and abs(r["lag_ms"]) <= 40
        for r in rows.values()
    )
    return {
        "benchmark": "lip_tracking",
        "machine": machine(),
        "portraits": rows,
        "targets": {"range_pct_min": 4.0, "correlation_min": 0.4, "lag_ms_max": 40, "met": met},
    }


def report(outcome: dict[str, Any]) -> str:
    lines = ["lip tracking: a face mesh run on the received video, against the received audio"]
    lines.append(
        f"  {'portrait':<13} {'tracked':>9} {'opening % of face (p5-p95)':>27} {'r':>6} {'lag':>7}"
        f" {'after talk / photo %':>21}"
    )
    for name, r in outcome["portraits"].items():
        o = r["opening_pct"]
        lines.append(
            f"  {name:<13} {r['tracked']:>4}/{r['frames']:<4} {o['p5']:>9.2f} - {o['p95']:<6.2f}"
            f" ({o['range']:>5.2f})  {r['correlation']:>6.2f} {r['lag_ms']:>5} ms"
            f" {r['after_talk_pct']:>10.2f} / {r['photo_pct']:<.2f}"
        )
    t = outcome["targets"]
    lines.append(
        f"  targets: range >= {t['range_pct_min']} %, r >= {t['correlation_min']},"
        f" |lag| <= {t['lag_ms_max']} ms: {'met' if t['met'] else 'MISSED'}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main("lip_tracking", __doc__, lambda p: None, main, report)
