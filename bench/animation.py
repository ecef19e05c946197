"""Animation and encoding cost per frame at 256, 512 and 1024 pixels, for a talking stream.

    .venv/bin/python bench/animation.py [--frames 250] [--json PATH]

For each portrait (the bundled one, and matplotlib's grace_hopper, a face twice as large in its frame)
and size: the animator's ms per frame (mouth, visemes and brows following real speech from espeak-ng when
installed, blinks, head motion on), and the VP8 and H264 encoders' ms per frame on those same frames,
through aiortc's own encoder classes (what a stream really pays). Beside it: VP8 on frames where the whole
picture sways by fractions of a pixel and a degree, the case the animator is designed to avoid. Then the
first-time setup of a photo: decoding, the face mesh, and the animator's fields at 512 px.

Targets: at most 2 ms per 512x512 animated frame; at most 150 ms to set up a new photo.
"""

from __future__ import annotations

import fractions
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import cv2
import matplotlib
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from served import bench_main, machine  # bench/served.py, beside this file

from talkstream.avatar.animator import Animator
from talkstream.avatar.portrait import bundled_portrait_bytes, load_portrait
from talkstream.avatar.speech import default_tts, speech_track
from talkstream.engine.ports import Mouth

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "level-asymmetry-allowed": "1", "profile-level-id": "42e01f"},
)
TIME_BASE = fractions.Fraction(1, 90000)


def mouth_track(frames: int) -> list[Mouth]:
    tts = default_tts()
    if tts is not None:
        synthesis = tts.synthesize(
            "The quick brown fox jumps over the lazy dog, again and again, for the benchmark. " * 4
        )
        speech = speech_track(synthesis.pcm, synthesis.phonemes)
        return [speech.mouth(k % speech.frames) for k in range(frames)]
    return [Mouth(0.5 + 0.5 * np.sin(k / 3.0), np.sin(k / 7.0), 0.0, 0.0) for k in range(frames)]


def photos() -> dict[str, bytes]:
    found = {"bundled": bundled_portrait_bytes()}
    sample = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if sample.exists():
        found["grace_hopper"] = sample.read_bytes()
    return found


def encode_ms(codec: RTCRtpCodecParameters, frames: list[np.ndarray]) -> float:
    encoder = get_encoder(codec)
    start = time.perf_counter()
    for k, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
        frame.pts = k * 3600
        frame.time_base = TIME_BASE
        encoder.encode(frame, force_keyframe=(k == 0))
    return (time.perf_counter() - start) / len(frames) * 1000


def setup_ms() -> dict[str, float]:
    """First-time setup of a photo (decode, face mesh, features, the animator's fields at 512 px), ms: the
    first photo in a fresh thread (its networks loaded too), then the median of five more per photo."""

    def timed(data: bytes) -> float:
        start = time.perf_counter()
        Animator(load_portrait(data), resolution=512)
        return (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(timed, photos()["bundled"]).result()
        figures = {"first_photo_first_thread_ms": round(first, 1)}
        for name, data in photos().items():
            runs = [pool.submit(timed, data).result() for _ in range(6)]
            figures[f"{name}_ms"] = round(float(np.median(runs[1:])), 1)
    return figures


def run(frames: int) -> dict[str, Any]:
    track = mouth_track(frames)
    rows = []
    for name, data in photos().items():
        portrait = load_portrait(data)
        for size in (256, 512, 1024):
            rows.append({"portrait": name, **measure(portrait, size, track)})
    budget = max(r["animate_ms"] for r in rows if r["size"] == 512)
    setup = setup_ms()
    return {
        "benchmark": "animation",
        "machine": machine(),
        "frames": frames,
        "rows": rows,
        "setup": setup,
        "targets": {
            "animate_512_ms_max": 2.0,
            "met": budget <= 2.0,
            "setup_ms_max": 150.0,
            "setup_met": max(setup.values()) <= 150.0,
        },
    }


def measure(portrait: Any, size: int, track: list[Mouth]) -> dict[str, Any]:
    frames = len(track)
    animator = Animator(portrait, resolution=size, motion=0.6)
    canvas = animator.still()

    def blink(k: int) -> float:
        return 1.0 if k % 100 < 3 else 0.0

    start = time.perf_counter()
    for k in range(frames):  # as the server draws: every frame into the stream's one canvas
        animator.frame(track[k], k / 25, blink=blink(k), out=canvas)
    animate = (time.perf_counter() - start) / frames * 1000
    rendered = [animator.frame(track[k], k / 25, blink=blink(k)) for k in range(frames)]
    # For comparison, a naive sway that moves the whole picture by a fraction of a pixel and a
    # fraction of a degree each frame, the case the animator is built to avoid.
    h, w = animator.height, animator.width
    shifted = []
    for k in range(frames):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.6 * np.sin(k / 9), 1.0)
        matrix[0, 2] += 1.7 * np.sin(k / 7)
        matrix[1, 2] += 0.9 * np.sin(k / 11)
        moved = cv2.warpAffine(animator.base, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        shifted.append(cv2.cvtColor(moved, cv2.COLOR_BGR2YUV_I420))
    return {
        "size": size,
        "frame": f"{animator.width}x{animator.height}",
        "animate_ms": round(animate, 3),
        "vp8_ms": round(encode_ms(VP8, rendered), 3),
        "h264_ms": round(encode_ms(H264, rendered), 3),
        "vp8_whole_frame_moving_ms": round(encode_ms(VP8, shifted), 3),
    }


def report(result: dict[str, Any]) -> str:
    lines = [f"animation benchmark: {result['frames']} frames per size (ms per frame)"]
    head = f"  {'portrait':<13} {'frame':>10} {'animate':>9} {'VP8':>8} {'H264':>8}"
    lines.append(head + f" {'VP8, whole frame swaying':>25}")
    for r in result["rows"]:
        lines.append(
            f"  {r.get('portrait', 'bundled'):<13} {r.get('frame', r['size']):>10} {r['animate_ms']:>9.2f}"
            f" {r['vp8_ms']:>8.2f} {r['h264_ms']:>8.2f} {r['vp8_whole_frame_moving_ms']:>25.2f}"
        )
    met = result["targets"]["met"]
    limit = result["targets"]["animate_512_ms_max"]
    lines.append(f"  512 px animation within {limit:g} ms: {'met' if met else 'MISSED'}")
    setup = result.get("setup", {})
    if setup:
        lines.append(
            "  photo setup (decode, face mesh, features, animator at 512 px), ms: "
            + ", ".join(f"{k} {v}" for k, v in setup.items())
        )
        ok = result["targets"].get("setup_met")
        lines.append(f"  setup within 150 ms: {'met' if ok else 'MISSED'}")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_main(
        "animation",
        __doc__,
        lambda p: p.add_argument("--frames", type=int, default=250),
        lambda a: run(a.frames),
        report,
    )
