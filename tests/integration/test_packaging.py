"""The package as a user installs it: a wheel built from the checkout, installed into a fresh virtualenv
outside it, serves the API with its demo page and OpenAPI description and replays the scenarios it ships.

Offline: the wheel is built without build isolation (setuptools comes from the test's own environment), and
the new virtualenv finds the dependencies in the test's site-packages through a `.pth` line, which adds
that folder to the path without running its `.pth` files, so the checkout's editable install stays out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import aiohttp
import pytest
from served import serving

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "engine",
    "transports",
    "adapters",
    "avatar",
    "specs",
    "deploy",
    "talkstream",
    "pyproject.toml",
    "README.md",
)

pytestmark = pytest.mark.timeout(300)


class Installed:
    def __init__(self, work: Path, venv: Path, build_output: str) -> None:
        self.work, self.venv, self.build_output = work, venv, build_output

    @property
    def talkstream(self) -> Path:
        return self.venv / "bin" / "talkstream"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.work, capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in (*SHIPPED, "LICENSE"):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=skip)
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip"]
    offline = ["--no-deps", "--no-index"]
    build = subprocess.run(
        [*pip, "wheel", "-v", *offline, "--no-build-isolation", "-w", work, source],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = work.glob("talkstream-*.whl")
    venv = work / "venv"
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run([*pip, "--python", python, "install", "-q", *offline, wheel], check=True)
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "talkstream-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(work, venv, build.stdout + build.stderr)


def test_the_wheel_builds_without_a_warning_and_carries_its_data(installed: Installed) -> None:
    warnings = sorted(set(re.findall(r"\b\w+Warning\b.*", installed.build_output)))
    assert not warnings, warnings
    probe = installed.run(
        str(installed.venv / "bin" / "python"),
        "-c",
        "import talkstream, talkstream.engine, talkstream.specs as s, talkstream.avatar.portrait as p;"
        "import talkstream.adapters.cluster as c;"
        "print(talkstream.engine.__file__); print(len(list(s.SCENARIOS.glob('*.yaml'))));"
        "print(len(p.bundled_portrait_bytes()) > 1000, s.OPENAPI.is_file(), s.MEDIA.is_dir(),"
        " all('WORKERS' in c.deploy_file(n) or n != 'haproxy.cfg' for n in"
        " ('haproxy.cfg', 'redis.conf', 'turnserver.conf', 'talkstream@.service')))",
    )
    assert probe.returncode == 0, probe.stderr
    where, scenarios, data = probe.stdout.splitlines()
    assert Path(where).is_relative_to(installed.venv) and not Path(where).is_relative_to(ROOT)
    assert int(scenarios) == len(list((ROOT / "specs" / "scenarios").glob("*.yaml")))
    assert data == "True True True True"  # the portrait, the spec, the media, deploy/ for `cluster`


async def test_the_installed_server_serves_its_page_spec_and_streams(installed: Installed) -> None:
    log = installed.work / "serve.log"
    with serving(talkstream=[str(installed.talkstream)], log=log, cwd=installed.work) as server:
        headers = {"Authorization": f"Basic {server.key}"}
        async with aiohttp.ClientSession(server.base) as http:
            async with http.get("/openapi.json") as response:
                assert response.status == 200
                spec = await response.json()
            assert "/talks/streams" in spec["paths"]
            async with http.get("/") as response:
                assert response.status == 200 and "text/html" in response.content_type
                assert "<script" in await response.text()
            async with http.get("/static/app.js") as response:
                assert response.status == 200
            async with http.post(
                "/talks/streams", json={"source_url": "bundled:astronaut"}, headers=headers
            ) as response:
                body = await response.json()
                assert response.status == 201, body
            assert body["offer"]["sdp"].startswith("v=0")
            async with http.delete(
                f"/talks/streams/{body['id']}", json={"session_id": body["session_id"]}, headers=headers
            ) as response:
                assert response.status == 200
    assert "Traceback" not in log.read_text()


def test_the_installed_replay_runs_the_shipped_scenarios(installed: Installed) -> None:
    replay = installed.run(str(installed.talkstream), "replay")
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    files = sorted((ROOT / "specs" / "scenarios").glob("*.yaml"))
    # On the memory transport (replay's default) the WebSocket API's scenarios skip: it needs real sockets.
    sockets = sum("\napi: websocket\n" in path.read_text() for path in files)
    assert sockets >= 3
    assert f"{len(files) - sockets} passed, 0 failed, {sockets} skipped" in replay.stdout
