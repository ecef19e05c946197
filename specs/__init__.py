"""The contract as data, shipped inside the package: D-ID's API as OpenAPI, its WebSocket messages as JSON
Schema, and the scenario format with its scenarios (`talkstream replay` runs them when given no files).

What it must never do: hold code; these are files that users, tests and the server read.
"""

from pathlib import Path

__all__ = ["MEDIA", "OPENAPI", "SCENARIOS", "SCENARIO_SCHEMA", "WEBSOCKET_SCHEMA"]

_HERE = Path(__file__).resolve().parent

OPENAPI = _HERE / "openapi.yaml"
SCENARIO_SCHEMA = _HERE / "scenario.schema.json"
SCENARIOS = _HERE / "scenarios"
WEBSOCKET_SCHEMA = _HERE / "websocket.schema.json"
MEDIA = SCENARIOS / "media"
