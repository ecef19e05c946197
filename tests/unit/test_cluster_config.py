"""Routing without shared lookups: ids that carry their worker, and the HAProxy configuration `talkstream
cluster` renders from deploy/haproxy.cfg (checked by HAProxy itself where it is installed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from talkstream.adapters.cluster import deploy_file, haproxy_config, program, render_coturn
from talkstream.engine.session import new_session_id, new_stream_id, routed_id, worker_of


def test_ids_carry_their_worker() -> None:
    stream, session = new_stream_id("w2"), new_session_id("w2")
    assert stream.startswith("strm_w2.") and session.startswith("w2.")
    assert worker_of(stream) == worker_of(session) == "w2"
    assert worker_of("tlk_" + routed_id("w12", "abc")) == "w12"
    assert worker_of(new_stream_id()) is None and worker_of(new_session_id()) is None
    assert worker_of("strm_W2.x") is None  # not a worker name a cluster gives
    assert "." not in new_stream_id()[5:]  # the random part never holds the separator
    with pytest.raises(ValueError, match="worker id"):
        new_stream_id("W-2")


def _rendered(workers: int) -> str:
    return haproxy_config(
        deploy_file("haproxy.cfg"),
        port=18000,
        stats_port=18404,
        workers=[(f"w{i}", 19000 + i) for i in range(1, workers + 1)],
    )


def test_the_haproxy_configuration_names_each_worker_once() -> None:
    config = _rendered(12)
    assert re.findall(r"^    server (\S+) (\S+) check$", config, re.M) == [
        (f"w{i}", f"127.0.0.1:{19000 + i}") for i in range(1, 13)
    ]
    assert len(re.findall(r"^    use-server ", config, re.M)) == 12
    assert "bind 127.0.0.1:18000\n" in config and "bind 127.0.0.1:18404\n" in config
    settings = [line for line in config.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in settings if "127.0.0.1:81" in line or "127.0.0.1:8000" in line]


def test_a_streams_path_matches_its_worker_only() -> None:
    config = _rendered(12)
    routes = {
        worker: [re.compile(p) for p in patterns.split()]
        for worker, patterns in re.findall(r"^    acl to_(w\d+) path_reg (.+)$", config, re.M)
    }
    for path, owner in (
        ("/talks/streams/strm_w1.abc/sdp", "w1"),
        ("/clips/streams/strm_w10.abc", "w10"),
        ("/talks/tlk_w12.xyz/result", "w12"),
        ("/talks/streams", None),
        ("/talks/streams/strm_abc/ice", None),  # a stream of a server that is not in a cluster
    ):
        matched = [w for w, patterns in routes.items() if any(p.search(path) for p in patterns)]
        assert matched == ([owner] if owner else []), (path, matched)


@pytest.mark.skipif(program("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_rendered_and_the_shipped_configuration(tmp_path: Path) -> None:
    haproxy = program("haproxy")
    assert haproxy is not None
    for name, text in (("rendered.cfg", _rendered(5)), ("shipped.cfg", deploy_file("haproxy.cfg"))):
        path = tmp_path / name
        path.write_text(text)
        check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_template_without_its_worker_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match="WORKERS"):
        haproxy_config("frontend api\n    bind :80\n", port=1, stats_port=2, workers=[("w1", 3)])


def test_coturn_settings_replace_their_lines_and_add_the_rest() -> None:
    rendered = render_coturn(
        "# listening-port=1\nlistening-port=3478\nfingerprint\n", {"listening-port": "4000", "verbose": ""}
    )
    assert rendered == "# listening-port=1\nlistening-port=4000\nfingerprint\nverbose\n"


def test_haproxys_own_answers_are_in_dids_error_shape() -> None:
    answers = re.findall(r"^    http-error status (\d+) .* string '(.+)'$", deploy_file("haproxy.cfg"), re.M)
    assert {status for status, _ in answers} == {"502", "503", "504"}
    for _, body in answers:
        error = json.loads(body)
        assert set(error) == {"kind", "description"} and error["kind"].endswith("Error")
    refused = re.search(r"http-request return status 404 .* string '(.+)' if", deploy_file("haproxy.cfg"))
    assert refused is not None and json.loads(refused.group(1))["kind"] == "NotFoundError"
