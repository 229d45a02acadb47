"""A FROST-Server stand-in for push tests and bench/push_latency.py: its REST body and its MQTT Observations.

The REST side is the fixture server serving sensorthings/normal.json, each Datastream's newest
Observation as the caller sets it; the MQTT side is a second Mosquitto on which the caller
publishes Observations in FROST's format on ``v1.1/Datastreams(<id>)/Observations``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.helpers import FIXTURES, FixtureServer, write_config
from tests.sources import only

KEY = "urban_sensors"
THINGS = "/api/v1.1/Things"
TEMPERATURE = f"soest/{KEY}/temperature"
ILLUMINANCE = f"soest/{KEY}/illuminance"
UP_TEMPERATURE = "v1.1/Datastreams(43)/Observations"  # Lufttemperatur in normal.json
UP_ILLUMINANCE = "v1.1/Datastreams(42)/Observations"  # Beleuchtungsstärke


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def observation(ident: int, at: datetime, result: object, datastream: int = 43) -> bytes:
    """An Observation as FROST publishes it: the full JSON, self and navigation links included."""
    base = "https://daten-api.osnabrueck.de/v1.1"
    return json.dumps({
        "@iot.selfLink": f"{base}/Observations({ident})", "@iot.id": ident,
        "phenomenonTime": stamp(at), "resultTime": stamp(at + timedelta(seconds=5)), "result": result,
        "Datastream@iot.navigationLink": f"{base}/Observations({ident})/Datastream",
        "FeatureOfInterest@iot.navigationLink": f"{base}/Observations({ident})/FeatureOfInterest",
    }).encode()


class RestSide:
    """normal.json, with each Datastream's newest Observation as the test sets it in ``newest``."""

    def __init__(self, upstream: FixtureServer) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        self.newest: dict[int, tuple[int, datetime, float]] = {
            42: (500, now - timedelta(minutes=2), 48210.0), 43: (501, now - timedelta(minutes=2), 23.8)}
        self.upstream = upstream
        upstream.serve(THINGS, self.body)

    def body(self) -> bytes:
        data = json.loads((FIXTURES / "sensorthings" / "normal.json").read_text())
        for stream in data["value"][0]["Datastreams"]:
            if stream["@iot.id"] in self.newest:
                ident, at, result = self.newest[stream["@iot.id"]]
                stream["Observations"] = [json.loads(observation(ident, at, result, stream["@iot.id"]))]
        return json.dumps(data).encode()

    def polls(self) -> int:
        return sum(1 for path, _ in self.upstream.requests if path.startswith(THINGS))


def push_config(path: Path, upstream: FixtureServer, up_port: int, **mqtt: Any) -> Path:
    """Only the SensorThings source, enabled, polled hourly, with options.mqtt pointing at ``up_port``."""
    base_url = upstream.url + "/api"

    def edit(data: dict[str, Any]) -> None:
        only(KEY, data, base_url)
        source = data["sources"][KEY]
        source["every"] = "1h"  # polls: the first, and one after each (re)subscription
        source["options"]["mqtt"] = {"host": "127.0.0.1", "port": up_port, "offline_after": 1.0,
                                     "reconnect_min": 0.2, "reconnect_max": 1.0, "timeout": 3, **mqtt}

    return write_config(path, base_url, edit=edit)
