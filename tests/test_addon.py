"""The Home Assistant add-on (issue #12): its manifest against the Supervisor's rules, and its start
module run as the Supervisor runs it, against a fake Supervisor over real HTTP and a real Mosquitto."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import gateway
from gateway import addon
from tests.helpers import ROOT, Mosquitto, Subscriber, wait_until

ADDON = ROOT / "addon"
DEFAULTS = ROOT / "topics.yaml"
SOURCES = list(yaml.safe_load(DEFAULTS.read_text())["sources"])
TOKEN = "supervisor-token-123"
PASSWORD = "gw-Secret-42"
GOOD = {"city_name": "Soest", "latitude": 51.571, "longitude": 8.106,
        "sources": ["sun", "brightsky"], "log_level": "info"}
SERVICE = {"result": "ok", "data": {"host": "core-mosquitto", "port": 1883, "ssl": False,
                                    "username": "addons", "password": PASSWORD, "protocol": "3.1.1",
                                    "addon": "core_mosquitto"}}


# --------------------------------------------------------------------------- a fake Supervisor

@dataclass
class Supervisor:
    """http.server answering GET /services/mqtt like the Supervisor; ``hang`` never answers."""

    status: int = 200
    body: bytes = json.dumps(SERVICE).encode()
    hang: bool = False
    seen: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Supervisor:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if outer.hang:
                    outer.release.wait(30)
                    return
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor().start()
    yield sup
    sup.stop()


def addon_env(tmp_path: Path, options: object, supervisor_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (tmp_path / "options.json").write_text(json.dumps(options))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, addon.OPTIONS_ENV: str(tmp_path / "options.json"), addon.DEFAULTS_ENV: str(DEFAULTS),
            addon.DATA_ENV: str(data), addon.TIMEOUT_ENV: "1", "SUPERVISOR_URL": supervisor_url,
            "SUPERVISOR_TOKEN": TOKEN, "GATEWAY_HTTP_PORT": "off", "PYTHONUNBUFFERED": "1"}


def run_addon(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.addon"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- options -> config

def test_options_become_the_gateway_config():
    options = addon.parse_options({**GOOD, "city_name": " Lippstadt ", "latitude": 51, "longitude": 8.35,
                                   "sources": ["sun", "waste_calendar", "sun"], "waste_street_id": 4711},
                                  SOURCES)
    assert options.sources == ("sun", "waste_calendar")
    defaults = yaml.safe_load(DEFAULTS.read_text())
    config = addon.gateway_config(defaults, options)
    assert config["city"] == {**defaults["city"], "name": "Lippstadt", "latitude": 51.0, "longitude": 8.35}
    assert {k for k, s in config["sources"].items() if s["enabled"]} == {"sun", "waste_calendar"}
    assert config["sources"]["waste_calendar"]["options"]["street_id"] == 4711
    assert config["mqtt"] == defaults["mqtt"]  # topics and discovery stay as shipped
    assert defaults["city"]["name"] == "Soest"  # the packaged copy is not changed in place


@pytest.mark.parametrize(("change", "option", "hint"), [
    ({"latitude": "north"}, "latitude", "not a number"),
    ({"latitude": True}, "latitude", "not a number"),
    ({"latitude": 95.5}, "latitude", "-90 to 90"),
    ({"longitude": -200}, "longitude", "-180 to 180"),
    ({"sources": ["sun", "weather"]}, "sources", "brightsky"),
    ({"sources": "sun"}, "sources", "not a list"),
    ({"sources": []}, "sources", "at least one"),
    ({"log_level": "verbose"}, "log_level", "debug, info, warning, error"),
    ({"city_name": ""}, "city_name", "1 to 64"),
    ({"city_name": None}, "city_name", "1 to 64"),
    ({"sources": ["waste_calendar"]}, "waste_street_id", "needed"),
    ({"waste_street_id": "24260"}, "waste_street_id", "whole number"),
    ({"waste_street_id": 0}, "waste_street_id", "whole number"),
    ({"colour": "red"}, "colour", "unknown option"),
    ({"latitude": None, "longitude": None}, "latitude", "not a number"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path: Path, change: dict, option: str, hint: str):
    result = run_addon(addon_env(tmp_path, {**GOOD, **change}))
    assert result.returncode == 2
    line = one_line(result)
    assert f"option {option}:" in line, line
    assert hint in line, line


@pytest.mark.parametrize("missing", ["city_name", "latitude", "longitude", "sources", "log_level"])
def test_a_missing_option_is_named(tmp_path: Path, missing: str):
    result = run_addon(addon_env(tmp_path, {k: v for k, v in GOOD.items() if k != missing}))
    assert result.returncode == 2
    assert f"option {missing}: missing" in one_line(result)


def test_unreadable_options_file(tmp_path: Path):
    env = addon_env(tmp_path, GOOD)
    Path(env[addon.OPTIONS_ENV]).write_text("{not json")
    result = run_addon(env)
    assert result.returncode == 2
    assert "not JSON" in one_line(result)


@pytest.mark.parametrize("options", [
    GOOD,
    {**GOOD, "sources": SOURCES, "waste_street_id": 12345, "latitude": -33.9, "longitude": 151.2},
    {**GOOD, "sources": ["waste_calendar"], "waste_street_id": 1, "log_level": "debug"},
])
def test_generated_config_passes_check_config(tmp_path: Path, options: dict):
    path = tmp_path / "topics.yaml"
    defaults = yaml.safe_load(DEFAULTS.read_text())
    addon.write_config(path, addon.gateway_config(defaults, addon.parse_options(options, SOURCES)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run([sys.executable, "-m", "gateway", "--config", str(path), "check-config"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(path.read_text())["city"]["latitude"] == options["latitude"]


# --------------------------------------------------------------------------- the Supervisor's MQTT service

def test_service_answer_becomes_the_broker_env(tmp_path: Path, supervisor: Supervisor):
    argv, child = addon.prepare(addon_env(tmp_path, GOOD, supervisor.url))
    assert supervisor.seen[0]["path"] == "/services/mqtt"
    assert supervisor.seen[0]["authorization"] == f"Bearer {TOKEN}"
    data = tmp_path / "data"
    assert {k: v for k, v in child.items() if k.startswith("GATEWAY_MQTT_")} == {
        "GATEWAY_MQTT_HOST": "core-mosquitto", "GATEWAY_MQTT_PORT": "1883", "GATEWAY_MQTT_TLS": "false",
        "GATEWAY_MQTT_PROTOCOL": "auto", "GATEWAY_MQTT_USERNAME": "addons",
        "GATEWAY_MQTT_PASSWORD_FILE": str(data / "mqtt_password")}
    assert child["GATEWAY_DATA_DIR"] == str(data)
    secret = data / "mqtt_password"
    assert secret.read_text() == PASSWORD
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert PASSWORD not in " ".join(argv)
    assert PASSWORD not in "".join(child.values())
    assert argv[1:] == ["-m", "gateway", "run", "--config", str(data / "topics.yaml"), "--log-level", "info"]


def test_ssl_and_mqtt5_and_no_credentials():
    env, password = addon.broker_env({"result": "ok", "data": {"host": "10.0.0.2", "port": "8883", "ssl": True,
                                                              "protocol": "5"}})
    assert env == {"GATEWAY_MQTT_HOST": "10.0.0.2", "GATEWAY_MQTT_PORT": "8883", "GATEWAY_MQTT_TLS": "true",
                   "GATEWAY_MQTT_PROTOCOL": "5"}
    assert password is None


@pytest.mark.parametrize(("status", "body", "hint"), [
    (401, b'{"result": "error", "message": "Unauthorized"}', "HTTP 401: Unauthorized"),
    (400, b'{"result": "error", "message": "No MQTT service"}', "HTTP 400: No MQTT service"),
    (200, b"<html>hello</html>", "not JSON"),
    (200, b'{"result": "error", "message": "nope"}', "no broker offered (nope)"),
    (200, b'{"result": "ok", "data": {"port": 1883, "ssl": false}}', "no 'host'"),
    (200, b'{"result": "ok", "data": {"host": "core-mosquitto", "ssl": false}}', "'port' null"),
    (200, b'{"result": "ok", "data": {"host": "core-mosquitto", "port": 1883, "ssl": "yes"}}', "'ssl'"),
    (200, b'{"result": "ok"}', "no broker offered"),
])
def test_bad_service_answers_give_one_line_and_exit_1(tmp_path: Path, supervisor: Supervisor, status: int,
                                                      body: bytes, hint: str):
    supervisor.status, supervisor.body = status, body
    result = run_addon(addon_env(tmp_path, GOOD, supervisor.url))
    assert result.returncode == 1
    line = one_line(result)
    assert "Supervisor MQTT service" in line, line
    assert hint in line, line
    assert supervisor.seen[0]["authorization"] == f"Bearer {TOKEN}"


def test_a_supervisor_that_never_answers_times_out(tmp_path: Path, supervisor: Supervisor):
    supervisor.hang = True
    result = run_addon(addon_env(tmp_path, GOOD, supervisor.url))
    assert result.returncode == 1
    assert "no answer from" in one_line(result)
    assert "within 1 s" in result.stderr


def test_no_token_and_no_supervisor(tmp_path: Path):
    env = addon_env(tmp_path, GOOD)
    result = run_addon({k: v for k, v in env.items() if k != "SUPERVISOR_TOKEN"})
    assert result.returncode == 1
    assert "SUPERVISOR_TOKEN is not set" in one_line(result)
    result = run_addon(env)  # port 9 on loopback: nothing listens
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9/services/mqtt" in one_line(result)


# --------------------------------------------------------------------------- end to end

@pytest.mark.broker
def test_addon_starts_the_gateway_on_the_supervisors_broker(tmp_path: Path, supervisor: Supervisor):
    broker = Mosquitto(tmp_path, "mosquitto.conf", users={"gateway": PASSWORD, "alice": "alice-pw"}).start()
    supervisor.body = json.dumps({"result": "ok", "data": {
        "host": "127.0.0.1", "port": broker.port, "ssl": False, "username": "gateway", "password": PASSWORD,
        "protocol": "3.1.1"}}).encode()
    sub = Subscriber(broker.port, "soest/#", "homeassistant/#", username="alice", password="alice-pw")
    log = (tmp_path / "addon.log").open("wb")
    env = addon_env(tmp_path, {**GOOD, "sources": ["sun"], "city_name": "Soest Süd"}, supervisor.url)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.addon"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        sub.wait_for("soest/gateway/status", "online", timeout=20)
        sub.wait_for("soest/sun/elevation", timeout=20)
        # What Home Assistant shows: the city name from the options in the discovered device's name.
        names = wait_until(lambda: {m.json()["device"]["name"] for m in sub.snapshot()
                                    if m.topic.startswith("homeassistant/") and m.payload
                                    and "device" in m.json()} or None, timeout=20)
        assert "Soest Süd Sun" in names
        config = tmp_path / "data" / "topics.yaml"
        assert yaml.safe_load(config.read_text())["city"]["name"] == "Soest Süd"
    finally:
        # execvpe kept the pid: this SIGTERM reaches the gateway itself, which says goodbye and exits 0.
        proc.terminate()
        code = proc.wait(15)
        log.close()
        sub.close()
        broker.stop()
    assert code == 0, (tmp_path / "addon.log").read_text(errors="replace")


# --------------------------------------------------------------------------- the manifest

MANIFEST = yaml.safe_load((ADDON / "config.yaml").read_text())
ARCHS = {"aarch64", "amd64", "armhf", "armv7", "i386"}
# The Supervisor's grammar for one schema element (supervisor/addons/options.py), written out here.
_NUM = r"-?\d*\.?\d+"
SCHEMA_ELEMENT = re.compile(
    r"^(?:bool|email|url|port|device(?:\(subsystem=[a-z]+\))?"
    r"|str(?:\(\d*,\d*\))?|password(?:\(\d*,\d*\))?"
    r"|int(?:\((?:-?\d+)?,(?:-?\d+)?\))?"
    rf"|float(?:\((?:{_NUM})?,(?:{_NUM})?\))?"
    r"|match\(.*\)|list\(.+\))\??$")


def test_manifest_has_the_required_keys_and_valid_values():
    for key in ("name", "version", "slug", "description", "arch"):
        assert MANIFEST.get(key), key
    assert MANIFEST["version"] == gateway.__version__
    assert re.fullmatch(r"[a-z0-9_]+", MANIFEST["slug"])
    assert MANIFEST["slug"] == "soest_gateway"
    assert MANIFEST["arch"]
    assert set(MANIFEST["arch"]) <= ARCHS
    assert MANIFEST["init"] is False
    assert MANIFEST["services"] == ["mqtt:need"]
    assert MANIFEST["url"].startswith("https://")
    assert MANIFEST["ports"] == {"9142/tcp": 9142}  # GATEWAY_HTTP_PORT's default (README)
    assert set(MANIFEST["ports_description"]) == set(MANIFEST["ports"])
    assert re.fullmatch(r"https?://\[HOST\]:\[PORT:9142\]/\S*", MANIFEST["watchdog"])


def schema_elements(rule: object) -> list[str]:
    if isinstance(rule, list):
        assert len(rule) == 1, rule
        return schema_elements(rule[0])
    if isinstance(rule, dict):
        return [e for value in rule.values() for e in schema_elements(value)]
    return [rule]


def test_every_option_has_a_valid_schema_entry():
    schema, options = MANIFEST["schema"], MANIFEST["options"]
    assert set(options) <= set(schema)
    assert set(schema) == set(addon.OPTION_NAMES)
    for name, rule in schema.items():
        for element in schema_elements(rule):
            assert isinstance(element, str), name
            assert SCHEMA_ELEMENT.match(element), f"{name}: {element!r}"
    assert schema["sources"] == [f"list({'|'.join(SOURCES)})"]  # every source of topics.yaml, nothing else
    assert schema["log_level"] == f"list({'|'.join(addon.LOG_LEVELS)})"
    required = {n for n, r in schema.items() if not str(r[0] if isinstance(r, list) else r).endswith("?")}
    assert required == set(addon.REQUIRED)
    addon.parse_options(options, SOURCES)  # the defaults the store installs are accepted by the start script


def test_build_files_match_the_manifest():
    build = yaml.safe_load((ADDON / "build.yaml").read_text())["build_from"]
    assert set(build) == set(MANIFEST["arch"])
    for arch, image in build.items():
        assert re.fullmatch(rf"ghcr\.io/home-assistant/{arch}-base-python:3\.1[1-9]-alpine[\d.]+", image)
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert "ARG BUILD_FROM\nFROM $BUILD_FROM\n" in dockerfile
    assert addon.DEFAULTS_PATH in dockerfile
    assert "COPY run.sh /run.sh" in dockerfile
    assert "python -m gateway.addon" in (ADDON / "run.sh").read_text()
    assert os.access(ADDON / "run.sh", os.X_OK)
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert {"name", "url", "maintainer"} <= set(repository)
    for doc in ("DOCS.md", "CHANGELOG.md"):
        assert (ADDON / doc).read_text().strip()
    assert f"## {gateway.__version__}" in (ADDON / "CHANGELOG.md").read_text()


# --------------------------------------------------------------------------- the docs

@pytest.mark.parametrize("path", [ROOT / "docs" / "addon.md", ADDON / "DOCS.md"], ids=lambda p: p.name)
def test_addon_docs_name_real_variables_and_links(path: Path):
    text = path.read_text(encoding="utf-8")
    known = {name for py in (ROOT / "gateway").glob("*.py")
             for name in re.findall(r"GATEWAY_[A-Z0-9_]*[A-Z0-9]", py.read_text(encoding="utf-8"))}
    used = set(re.findall(r"(?<![A-Z0-9_])GATEWAY_[A-Z0-9_]*[A-Z0-9]", text))
    assert used <= known, f"no such variable: {sorted(used - known)}"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target.partition("#")[0]).exists(), f"{path.name}: broken link {target}"
    for option in addon.OPTION_NAMES:
        assert f"`{option}`" in text, option
