"""The distribution's layout: the top-level folders install under `talkstream.*`, nothing else, and
`talkstream` itself holds the public names."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


FOLDERS = ("engine", "transports", "adapters", "avatar", "specs", "deploy")


def test_every_package_folder_is_listed_and_mapped() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")
    assert folders == sorted([*FOLDERS, "talkstream"])
    assert setuptools["package-dir"] == {f"talkstream.{name}": name for name in FOLDERS}
    # Every folder below them that holds a module or a file the package ships is listed, so setuptools
    # neither drops it nor warns; __pycache__ and the like are not.
    below = set()
    for name in FOLDERS:
        for path in (ROOT / name).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                below.add(".".join(["talkstream", *path.parent.relative_to(ROOT).parts]))
    expected = {"talkstream", *(f"talkstream.{name}" for name in FOLDERS)}
    renamed = {f"talkstream.{name}" for name in FOLDERS}
    assert sorted(setuptools["packages"]) == sorted(expected | {b for b in below if b not in renamed})


def test_the_public_names_are_one_import_away() -> None:
    import talkstream
    from talkstream.engine import errors

    homes = talkstream._HOMES
    assert sorted(talkstream.__all__) == sorted([*homes, *errors.__all__])
    for name, home in homes.items():
        assert getattr(talkstream, name) is getattr(importlib.import_module(f"talkstream.{home}"), name)
    for name in errors.__all__:
        assert getattr(talkstream, name) is getattr(errors, name)
    with pytest.raises(AttributeError):
        talkstream.nothing_of_that_name  # noqa: B018


def test_importing_the_engine_loads_no_backend() -> None:
    probe = (
        "import sys, talkstream, talkstream.engine, talkstream.engine.client;"
        "print(sorted(m for m in ('aiohttp', 'aiortc', 'av', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
