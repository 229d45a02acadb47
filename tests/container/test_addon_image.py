"""The Home Assistant add-on's image (addon/Dockerfile with addon/run.sh), built and run with podman.

scripts/build-image --addon builds it from the checkout's sources served as the release archive
the Dockerfile downloads, on a stand-in for the HA base image (Debian bookworm's Python 3.11 plus
curl; the real base is Alpine with Python 3.12 and cannot be pulled here). The container gets
what the Supervisor gives an add-on: /data with options.json, SUPERVISOR_TOKEN, and an HTTP
service at SUPERVISOR_URL answering /services/mqtt (a local server, as in tests/test_addon.py),
which points it at a real Mosquitto with password authentication.
"""

from __future__ import annotations

import json
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway import __version__
from tests.container.conftest import ONESHOT_FLAGS, Built, Container, podman
from tests.helpers import Mosquitto, Subscriber, free_port, wait_until
from tests.test_addon import GOOD, PASSWORD, TOKEN, Supervisor

pytestmark = pytest.mark.container

STATUS = "soest/gateway/status"


def supervisor_env(supervisor: Supervisor, http_port: int) -> list[str]:
    return ["-e", f"SUPERVISOR_URL={supervisor.url}", "-e", f"SUPERVISOR_TOKEN={TOKEN}",
            "-e", "GATEWAY_HTTP_HOST=127.0.0.1", "-e", f"GATEWAY_HTTP_PORT={http_port}",
            "-e", "GATEWAY_ADDON_SUPERVISOR_TIMEOUT=2"]


def data_dir(tmp_path: Path, options: object) -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (data / "options.json").write_text(json.dumps(options))
    return data


def one_shot(image: Built, data: Path, supervisor: Supervisor) -> subprocess.CompletedProcess[str]:
    return podman("run", "--rm", *ONESHOT_FLAGS, *supervisor_env(supervisor, free_port()), "-v", f"{data}:/data",
                  image.tag, check=False, timeout=120)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor().start()
    yield sup
    sup.stop()


def test_the_addon_image_runs_the_gateway_on_the_supervisors_broker(
        addon_image: Built, tmp_path: Path, supervisor: Supervisor, containers: list[Container]):
    broker = Mosquitto(tmp_path, "mosquitto.conf", users={"gateway": PASSWORD, "alice": "alice-pw"}).start()
    supervisor.body = json.dumps({"result": "ok", "data": {
        "host": "127.0.0.1", "port": broker.port, "ssl": False, "username": "gateway", "password": PASSWORD,
        "protocol": "3.1.1"}}).encode()
    data = data_dir(tmp_path, {**GOOD, "sources": ["sun"], "city_name": "Soest Süd"})
    http_port = free_port()
    sub = Subscriber(broker.port, "soest/#", "homeassistant/#", username="alice", password="alice-pw")
    container = Container(addon_image.tag, [*supervisor_env(supervisor, http_port), "-v", f"{data}:/data"]).start()
    containers.append(container)
    try:
        sub.wait_for(STATUS, "online", timeout=30)
        assert supervisor.seen[0]["path"] == "/services/mqtt"
        assert supervisor.seen[0]["authorization"] == f"Bearer {TOKEN}"
        elevation = sub.wait_for("soest/sun/elevation", timeout=30)
        assert elevation.qos == 1
        float(elevation.payload)
        # What Home Assistant shows: the city name from the options in the discovered device's name.
        # The state may come before its discovery config (below 1,000 entities nothing waits for the
        # announce), and the gateway's own device comes first: wait for the sun's.
        def names() -> set[str]:
            return {m.json()["device"]["name"] for m in sub.snapshot()
                    if m.topic.startswith("homeassistant/") and m.payload and "device" in m.json()}

        wait_until(lambda: "Soest Süd Sun" in names(), timeout=20)
        assert names() == {"Soest Süd Gateway", "Soest Süd Sun"}
        # What run.sh and gateway.addon left in /data: the config from the options, the password
        # readable by the add-on alone and nowhere on the command line.
        assert yaml.safe_load((data / "topics.yaml").read_text())["city"]["name"] == "Soest Süd"
        password = data / "mqtt_password"
        assert password.read_text() == PASSWORD
        assert stat.S_IMODE(password.stat().st_mode) == 0o600
        pid = container.inspect()["State"]["Pid"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-m", b"gateway", b"run"], cmdline  # exec'd: the gateway is PID 1
        assert PASSWORD.encode() not in b" ".join(cmdline)
        # The add-on's watchdog (config.yaml) asks /healthz on the add-on's port.
        wait_until(lambda: _get(http_port, "/healthz") == 200, timeout=15)

        mark = sub.mark()
        start = time.monotonic()
        podman("kill", "--signal", "TERM", container.name)
        code = container.wait(timeout=30)
        elapsed = time.monotonic() - start
        assert code == 0, container.logs()
        assert elapsed < 5, f"SIGTERM to exit took {elapsed:.1f} s"
        sub.wait_for(STATUS, "offline", after=mark, timeout=5)
    finally:
        sub.close()
        broker.stop()
    assert "Traceback" not in container.logs()


def test_the_addon_image_refuses_bad_options_and_a_refusing_supervisor_in_one_line(
        addon_image: Built, tmp_path: Path, supervisor: Supervisor):
    bad = one_shot(addon_image, data_dir(tmp_path / "bad", {**GOOD, "latitude": 123.0}), supervisor)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert one_line(bad) == "error: add-on option latitude: 123.0 is out of range (-90 to 90)"
    assert supervisor.seen == []  # options are checked before anyone is asked

    supervisor.status, supervisor.body = 403, b'{"result": "error", "message": "forbidden"}'
    refused = one_shot(addon_image, data_dir(tmp_path / "refused", GOOD), supervisor)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    line = one_line(refused)
    assert line.startswith("error: Supervisor MQTT service: "), line
    assert "answered HTTP 403: forbidden" in line


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except OSError:
        return 0


def test_the_addon_image_keeps_no_build_leftovers_and_carries_its_labels(addon_image: Built):
    (info,) = json.loads(podman("image", "inspect", addon_image.tag).stdout)
    labels = info["Labels"]
    build = yaml.safe_load((Path(__file__).parents[2] / "addon" / "build.yaml").read_text())
    for key, value in build["labels"].items():
        assert labels[key] == value, key
    assert labels["org.opencontainers.image.version"] == __version__
    probe = ("import os, sysconfig\n"
             "site = sysconfig.get_paths()['purelib']\n"
             "print(site, sorted(p for p in os.listdir(site) if p.split('-')[0] in ('pip', 'setuptools', 'wheel')),\n"
             "      os.path.exists('/tmp/src'), sum(len(files) for _, _, files in os.walk('/root/.cache')))\n")
    result = podman("run", "--rm", *ONESHOT_FLAGS, "--entrypoint", "/opt/venv/bin/python", addon_image.tag,
                    "-c", probe, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/opt/venv/lib/python3.11/site-packages", "[]", "False", "0"]
