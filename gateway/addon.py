"""Home Assistant add-on start: /data/options.json and the Supervisor's MQTT service -> a running gateway.

``python -m gateway.addon`` (addon/run.sh) reads the add-on options, asks the Supervisor which broker
to use, writes a topics.yaml and the broker password under /data, and replaces itself with
``python -m gateway run``. The gateway is then the container's main process and handles SIGTERM
itself. Bad options exit 2, a broker that cannot be found exits 1; both with one line on stderr,
which is what the add-on's log page shows.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

EXIT_SERVICE = 1
EXIT_OPTIONS = 2
# Overridable so that the tests (and a developer without a Supervisor) can point elsewhere.
OPTIONS_ENV = "GATEWAY_ADDON_OPTIONS"
DEFAULTS_ENV = "GATEWAY_ADDON_DEFAULT_CONFIG"
DATA_ENV = "GATEWAY_ADDON_DATA_DIR"
TIMEOUT_ENV = "GATEWAY_ADDON_SUPERVISOR_TIMEOUT"
OPTIONS_PATH = "/data/options.json"
DEFAULTS_PATH = "/usr/share/soest-gateway/topics.yaml"  # addon/Dockerfile puts the repo's topics.yaml here
DATA_PATH = "/data"
SUPERVISOR_URL = "http://supervisor"
SUPERVISOR_TIMEOUT_S = 10.0
CONFIG_NAME = "topics.yaml"
PASSWORD_NAME = "mqtt_password"
LOG_LEVELS = ("debug", "info", "warning", "error")
WASTE_SOURCE = "waste_calendar"
OPTION_NAMES = ("city_name", "latitude", "longitude", "sources", "waste_street_id", "log_level")
REQUIRED = ("city_name", "latitude", "longitude", "sources", "log_level")
# Variables the add-on decides; inherited values would mix a second broker into the Supervisor's.
BROKER_VARS = ("GATEWAY_MQTT_HOST", "GATEWAY_MQTT_PORT", "GATEWAY_MQTT_PROTOCOL", "GATEWAY_MQTT_USERNAME",
               "GATEWAY_MQTT_PASSWORD", "GATEWAY_MQTT_PASSWORD_FILE", "GATEWAY_MQTT_TLS")


class AddonError(Exception):
    """One line for the add-on log, and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _bad(option: str, message: str) -> AddonError:
    return AddonError(f"add-on option {option}: {message}", EXIT_OPTIONS)


@dataclass(frozen=True)
class Options:
    city_name: str
    latitude: float
    longitude: float
    sources: tuple[str, ...]
    waste_street_id: int | None
    log_level: str


def _number(raw: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = raw[name]
    # bool is an int to Python, not a coordinate to anyone.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"{json.dumps(value)} is not a number (give decimal degrees, {low:g} to {high:g})")
    if not math.isfinite(value) or not low <= value <= high:
        raise _bad(name, f"{value} is out of range ({low:g} to {high:g})")
    return float(value)


def _sources(value: object, known: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _bad("sources", f"{json.dumps(value)} is not a list (give source keys: {', '.join(known)})")
    chosen: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in known:
            raise _bad("sources", f"{json.dumps(item)} is not a source (valid: {', '.join(known)})")
        if item not in chosen:
            chosen.append(item)
    if not chosen:
        raise _bad("sources", f"the list is empty; enable at least one of {', '.join(known)}")
    return tuple(chosen)


def _street(value: object, sources: Sequence[str]) -> int | None:
    if value is None:
        if WASTE_SOURCE in sources:
            raise _bad("waste_street_id", f"needed when sources include {WASTE_SOURCE} "
                                          "(the street id from soest.abfall-app.net)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad("waste_street_id", f"{json.dumps(value)} is not a street id (a whole number from 1 up)")
    return value


def parse_options(raw: object, known_sources: Sequence[str]) -> Options:
    """The add-on options as the Supervisor wrote them, checked; AddonError (exit 2) names the first bad one."""
    if not isinstance(raw, dict):
        raise AddonError(f"add-on options: {type(raw).__name__} instead of an object of options", EXIT_OPTIONS)
    for name in raw:
        if name not in OPTION_NAMES:
            raise _bad(str(name), f"unknown option (valid: {', '.join(OPTION_NAMES)})")
    for name in REQUIRED:
        if name not in raw:
            raise _bad(name, "missing (a required option)")
    city = raw["city_name"]
    if not isinstance(city, str) or not 1 <= len(city.strip()) <= 64:
        raise _bad("city_name", f"{json.dumps(city)} is not a name (text of 1 to 64 characters)")
    level = raw["log_level"]
    if level not in LOG_LEVELS:
        raise _bad("log_level", f"{json.dumps(level)} is not one of {', '.join(LOG_LEVELS)}")
    sources = _sources(raw["sources"], known_sources)
    return Options(city_name=city.strip(), latitude=_number(raw, "latitude", -90, 90),
                   longitude=_number(raw, "longitude", -180, 180), sources=sources,
                   waste_street_id=_street(raw.get("waste_street_id"), sources), log_level=level)


def gateway_config(defaults: Mapping[str, Any], options: Options) -> dict[str, Any]:
    """The packaged topics.yaml with the options applied; everything else (topics, slugs) stays as shipped."""
    config = copy.deepcopy(dict(defaults))
    config["city"].update(name=options.city_name, latitude=options.latitude, longitude=options.longitude)
    for key, source in config["sources"].items():
        source["enabled"] = key in options.sources
    if options.waste_street_id is not None and WASTE_SOURCE in config["sources"]:
        waste = config["sources"][WASTE_SOURCE].setdefault("options", {})
        waste.pop("district_id", None)  # the adapter prefers street_id; a leftover district would only confuse
        waste["street_id"] = options.waste_street_id
    return config


def _service_error(message: str) -> AddonError:
    return AddonError(f"Supervisor MQTT service: {message}", EXIT_SERVICE)


def broker_env(answer: object) -> tuple[dict[str, str], str | None]:
    """GATEWAY_MQTT_* variables and the password from the Supervisor's /services/mqtt answer."""
    if not isinstance(answer, dict) or answer.get("result") != "ok" or not isinstance(answer.get("data"), dict):
        message = answer.get("message") if isinstance(answer, dict) else None
        raise _service_error(f"no broker offered ({message or 'result is not ok'}); "
                             "install and start the Mosquitto broker add-on")
    data = answer["data"]
    host, port, ssl = data.get("host"), data.get("port"), data.get("ssl", False)
    if not isinstance(host, str) or not host:
        raise _service_error("the answer has no 'host'")
    if isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdecimal() \
            or not 1 <= int(port) <= 65535:
        raise _service_error(f"'port' {json.dumps(port)} is not a port number (1-65535)")
    if not isinstance(ssl, bool):
        raise _service_error(f"'ssl' {json.dumps(ssl)} is not true or false")
    env = {"GATEWAY_MQTT_HOST": host, "GATEWAY_MQTT_PORT": str(int(port)),
           "GATEWAY_MQTT_TLS": "true" if ssl else "false",
           # The Mosquitto add-on announces 3.1.1 but speaks 5; auto tries 5 and falls back.
           "GATEWAY_MQTT_PROTOCOL": "5" if str(data.get("protocol")) == "5" else "auto"}
    username, password = data.get("username"), data.get("password")
    for name, value in (("username", username), ("password", password)):
        if value is not None and not isinstance(value, str):
            raise _service_error(f"'{name}' is not text")
    if username:
        env["GATEWAY_MQTT_USERNAME"] = username
    return env, (password or None) if username else None


def fetch_service(url: str, token: str | None, timeout: float) -> object:
    """GET <supervisor>/services/mqtt, the parsed JSON answer; AddonError (exit 1) for anything else."""
    if not token:
        raise _service_error("SUPERVISOR_TOKEN is not set (the Supervisor sets it inside an add-on)")
    where = f"{url.rstrip('/')}/services/mqtt"
    try:
        response = requests.get(where, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except requests.Timeout:
        raise _service_error(f"no answer from {where} within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise _service_error(f"cannot reach {where}: {type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        message = answer.get("message") if isinstance(answer, dict) else None
        hint = " (the add-on needs 'services: [mqtt:need]' in config.yaml)" if response.status_code in (401, 403) \
            else ""
        raise _service_error(f"{where} answered HTTP {response.status_code}"
                             f"{': ' + str(message) if message else ''}{hint}")
    if answer is None:
        raise _service_error(f"{where} answered with something that is not JSON")
    return answer


def _read_options(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AddonError(f"{path}: cannot read the add-on options: {exc.strerror or exc}", EXIT_OPTIONS) from None
    except ValueError as exc:
        raise AddonError(f"{path}: not JSON ({exc})", EXIT_OPTIONS) from None


def _read_defaults(path: Path) -> dict[str, Any]:
    try:
        defaults = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AddonError(f"{path}: cannot read the packaged topics.yaml: {exc}", EXIT_SERVICE) from None
    if not isinstance(defaults, dict) or not isinstance(defaults.get("sources"), dict) \
            or not isinstance(defaults.get("city"), dict):
        raise AddonError(f"{path}: the packaged topics.yaml has no city or sources", EXIT_SERVICE)
    return defaults


def write_private(path: Path, text: str) -> None:
    """``text`` in a file only the add-on's user can read, created so (no moment with wider rights)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # an older file keeps its mode through O_CREAT
        file.write(text)


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    header = ("# Written by the Home Assistant add-on at each start from /data/options.json and the\n"
              "# packaged topics.yaml; edit the add-on options instead of this file.\n")
    path.write_text(header + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True), encoding="utf-8")


def prepare(env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Everything before the exec: the gateway's argv and environment."""
    data_dir = Path(env.get(DATA_ENV, DATA_PATH))
    data_dir.mkdir(parents=True, exist_ok=True)
    defaults = _read_defaults(Path(env.get(DEFAULTS_ENV, DEFAULTS_PATH)))
    options = parse_options(_read_options(Path(env.get(OPTIONS_ENV, OPTIONS_PATH))), list(defaults["sources"]))
    try:
        timeout = float(env.get(TIMEOUT_ENV, SUPERVISOR_TIMEOUT_S))
    except ValueError:
        raise AddonError(f"{TIMEOUT_ENV}: {env[TIMEOUT_ENV]!r} is not a number of seconds", EXIT_SERVICE) from None
    answer = fetch_service(env.get("SUPERVISOR_URL", SUPERVISOR_URL), env.get("SUPERVISOR_TOKEN"), timeout)
    broker, password = broker_env(answer)
    child = {k: v for k, v in env.items() if k not in BROKER_VARS}
    child.update(broker)
    if password is not None:
        write_private(data_dir / PASSWORD_NAME, password)
        child["GATEWAY_MQTT_PASSWORD_FILE"] = str(data_dir / PASSWORD_NAME)
    child["GATEWAY_DATA_DIR"] = str(data_dir)
    # ports: in config.yaml maps the container's port; a loopback listener would be unreachable.
    child.setdefault("GATEWAY_HTTP_HOST", "0.0.0.0")
    config_path = data_dir / CONFIG_NAME
    write_config(config_path, gateway_config(defaults, options))
    argv = [sys.executable, "-m", "gateway", "run", "--config", str(config_path), "--log-level", options.log_level]
    return argv, child


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        argv, child = prepare(os.environ if env is None else env)
    except AddonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    sys.stdout.flush()
    os.execvpe(argv[0], argv, child)
    return 0  # not reached: execvpe replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
