"""What a worker counts, for Prometheus: `Metrics` hears the stream service (`engine.ports.ServiceObserver`),
the HTTP edge's errors and the encoder's times, and `metrics` serves them at ``GET /metrics`` in Prometheus'
text format, through prometheus-client.

Each app has its registry (several servers in one process, as in tests, never mix their counts). Live
streams by state are read from the service when scraped, so they can never drift from it.

What it must never do: label a series with anything a client chooses (a key, a stream id, a path): the
series would grow without bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from talkstream.engine.service import StreamService
from talkstream.engine.states import State

__all__ = ["METRICS", "Metrics", "metrics_page"]

# Seconds: connects over loopback take ~0.05-0.2 s, relayed or remote ones up to seconds.
_CONNECT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 20.0)
# A talk's first frame waits for its speech's first stretch (text-to-speech) and any talk before it.
_FIRST_FRAME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# One frame's encode: ~1-5 ms for VP8 at 512x512 here; the frame time is 40 ms.
_ENCODE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.025, 0.04, 0.08, 0.16)


class Metrics:
    """A worker's counters and histograms, in a registry of its own."""

    def __init__(self, worker: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.worker = worker or ""
        self.talks = Counter(
            "talkstream_talks", "Talks ended, by outcome", ["outcome"], registry=self.registry
        )
        self.frames = Counter("talkstream_frames_sent", "Video frames sent", registry=self.registry)
        self.encode = Histogram(
            "talkstream_encode_seconds",
            "Time to encode one video frame",
            buckets=_ENCODE_BUCKETS,
            registry=self.registry,
        )
        self.connect = Histogram(
            "talkstream_connect_seconds",
            "From a stream's create to its ICE connection",
            buckets=_CONNECT_BUCKETS,
            registry=self.registry,
        )
        self.talk_first_frame = Histogram(
            "talkstream_talk_first_frame_seconds",
            "From a talk's request to its first video frame sent",
            buckets=_FIRST_FRAME_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "talkstream_errors", "Errors told to clients, by kind", ["kind"], registry=self.registry
        )
        for outcome in ("done", "interrupted", "error", "rejected"):
            self.talks.labels(outcome)  # every series exists from the start, at 0

    def watch(self, service: StreamService) -> None:
        """Report `service`'s live streams by state, and whether it is draining, when scraped."""
        self.registry.register(_Streams(service, self.worker))

    # -- engine.ports.ServiceObserver --

    def connected(self, seconds: float) -> None:
        self.connect.observe(seconds)

    def first_frame(self, seconds: float) -> None:
        self.talk_first_frame.observe(seconds)

    def frame_sent(self) -> None:
        self.frames.inc()

    def talk_ended(self, outcome: Literal["done", "interrupted", "error", "rejected"]) -> None:
        self.talks.labels(outcome).inc()

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    # -- the transport's encoders (any thread) --

    def encoded(self, seconds: float) -> None:
        self.encode.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Streams(Collector):
    def __init__(self, service: StreamService, worker: str) -> None:
        self.service = service
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys((s.value for s in State if s is not State.CLOSED), 0)
        for stream in self.service.streams():
            state = stream.session.state.value
            if state in counts:
                counts[state] += 1
        streams = GaugeMetricFamily("talkstream_streams", "Live streams, by state", labels=["state"])
        for state, count in counts.items():
            streams.add_metric([state], count)
        yield streams
        yield GaugeMetricFamily(
            "talkstream_draining",
            "1 while this worker drains (takes no new streams or talks)",
            value=1 if self.service.draining else 0,
        )
        info = GaugeMetricFamily("talkstream_worker", "This worker's id (a constant 1)", labels=["worker"])
        info.add_metric([self.worker], 1)
        yield info


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /metrics``: the worker's metrics in Prometheus' text format (scrape each worker directly; the
    bundled HAProxy configuration does not pass this path through)."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
