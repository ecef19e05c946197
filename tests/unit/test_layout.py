"""The distribution's layout: the design card's folders install under `talkstream.*`, nothing else."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_and_mapped() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")
    assert sorted(setuptools["packages"]) == [f"talkstream.{name}" for name in folders]
    assert setuptools["package-dir"] == {f"talkstream.{name}": name for name in folders}


def test_installed_under_talkstream_only(tmp_path: Path) -> None:
    for name in ("engine", "transports", "adapters"):
        module = importlib.import_module(f"talkstream.{name}")
        assert Path(module.__file__ or "").resolve().parent == ROOT / name
    # From a folder outside the checkout, as an embedding service would see the installed distribution.
    probe = (
        "import importlib.util as u; print([n for n in ('engine','transports','adapters') if u.find_spec(n)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_console_script_and_licence() -> None:
    assert PYPROJECT["project"]["scripts"] == {"talkstream": "talkstream.adapters.cli:main"}
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_engine_imports_no_backend() -> None:
    backends = {"aiohttp", "aiortc", "aioice", "av", "talkstream.adapters", "talkstream.transports"}
    for path in (ROOT / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in backends), (path.name, name)
