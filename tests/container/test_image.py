"""The gateway's image (Dockerfile), built with scripts/build-image and run with podman (issue #15).

Every container runs on the host network with the project's Dockerfile defaults, plus what a user
sets: GATEWAY_MQTT_HOST/PORT for a real Mosquitto the test starts, its own topics.yaml mounted
read-only over /config/topics.yaml (pointed at a local fixture server), a named volume at /data,
and, as examples/docker-compose.yml does, a read-only root file system (podman's extra tmpfs
mounts turned off, so it is exactly Docker's read_only). GATEWAY_HTTP_HOST/PORT move the status
endpoint to a free loopback port, since the host network is shared with other tests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway import __version__
from tests.container.conftest import ONESHOT_FLAGS, Built, Container, podman, volume_path
from tests.helpers import (
    FixtureServer,
    Mosquitto,
    Subscriber,
    brightsky_config,
    expected_tree,
    free_port,
    retained_tree,
    wait_until,
)

pytestmark = pytest.mark.container

TEMPERATURE = "soest/brightsky/temperature"
STATUS = "soest/gateway/status"
UID = 10001


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def gateway(image: Built, config: Path, broker: Mosquitto, volume: str, http_port: int,
            read_only: bool = True) -> Container:
    args = ["-e", "GATEWAY_MQTT_HOST=127.0.0.1", "-e", f"GATEWAY_MQTT_PORT={broker.port}",
            "-e", "GATEWAY_HTTP_HOST=127.0.0.1", "-e", f"GATEWAY_HTTP_PORT={http_port}",
            "-e", "GATEWAY_LOG_LEVEL=debug",
            "-v", f"{config}:/config/topics.yaml:ro", "-v", f"{volume}:/data"]
    if read_only:
        args += ["--read-only", "--read-only-tmpfs=false"]
    return Container(image.tag, args)


def one_line_error(proc: object) -> str:
    stderr = proc.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------- check-config


def test_check_config_accepts_the_default_and_refuses_a_broken_one_in_one_line(image: Built, tmp_path: Path):
    ok = podman("run", "--rm", *ONESHOT_FLAGS, image.tag, "check-config", check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("/config/topics.yaml: OK"), ok.stdout

    broken = tmp_path / "topics.yaml"
    broken.write_text((Path(__file__).parents[2] / "topics.yaml").read_text().replace(
        "base_topic: soest", "base_topic: soest/#", 1))
    assert "base_topic: soest/#" in broken.read_text()
    bad = podman("run", "--rm", *ONESHOT_FLAGS, "-v", f"{broken}:/config/topics.yaml:ro", image.tag, "check-config",
                 check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    line = one_line_error(bad)
    assert line.startswith("error: /config/topics.yaml"), line
    assert "base_topic" in line


# --------------------------------------------------------------------------- run


def test_run_publishes_the_retained_tree_passes_its_healthcheck_and_stops_on_sigterm(
        image: Built, tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, volume: str,
        containers: list[Container]):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    http_port = free_port()
    sub = Subscriber(broker.port, STATUS)
    container = gateway(image, config, broker, volume, http_port).start()
    containers.append(container)
    try:
        sub.wait_for(STATUS, "online", timeout=30)
        tree = retained_tree(broker.port, expected_tree(config, {TEMPERATURE}), timeout=30)
        assert tree[TEMPERATURE] == b"24.3"
        assert tree[STATUS] == b"online"
        assert any(topic.startswith("homeassistant/sensor/soest/") for topic in tree)
        assert len(upstream.requests) >= 1  # the value came from the fixture server, over the host network

        health = podman("healthcheck", "run", container.name, check=False, timeout=30)
        assert health.returncode == 0, health.stdout + health.stderr + container.logs()
        assert http_get(http_port, "/healthz") == (200, b"ok\n")

        mark = sub.mark()
        start = time.monotonic()
        podman("kill", "--signal", "TERM", container.name)
        code = container.wait(timeout=30)
        elapsed = time.monotonic() - start
        assert code == 0, container.logs()
        assert elapsed < 5, f"SIGTERM to exit took {elapsed:.1f} s"
        sub.wait_for(STATUS, "offline", after=mark, timeout=5)  # said goodbye before exiting
    finally:
        sub.close()
    assert retained_tree(broker.port, {STATUS})[STATUS] == b"offline"
    assert "Traceback" not in container.logs()


def test_readyz_turns_503_when_the_broker_stops(image: Built, tmp_path: Path, broker: Mosquitto,
                                                upstream: FixtureServer, volume: str,
                                                containers: list[Container]):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    http_port = free_port()
    container = gateway(image, config, broker, volume, http_port).start()
    containers.append(container)
    wait_until(lambda: http_get(http_port, "/readyz")[0] == 200, timeout=30)
    assert json.loads(http_get(http_port, "/readyz")[1]) == {"ready": True, "reasons": []}
    broker.stop()
    wait_until(lambda: http_get(http_port, "/readyz")[0] == 503, timeout=15)
    assert "not connected to the MQTT broker" in json.loads(http_get(http_port, "/readyz")[1])["reasons"]
    # Liveness is not readiness: the HEALTHCHECK keeps passing, so the engine does not restart a
    # gateway that waits for its broker.
    assert podman("healthcheck", "run", container.name, check=False, timeout=30).returncode == 0
    broker.start()
    wait_until(lambda: http_get(http_port, "/readyz")[0] == 200, timeout=15)


def test_runs_as_uid_10001_and_can_write_only_to_data(image: Built, tmp_path: Path, broker: Mosquitto,
                                                       upstream: FixtureServer, volume: str,
                                                       containers: list[Container]):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    http_port = free_port()
    container = gateway(image, config, broker, volume, http_port).start()
    containers.append(container)
    wait_until(lambda: http_get(http_port, "/readyz")[0] == 200, timeout=30)
    # The gateway itself (PID 1 in the container), as the host's kernel sees it.
    pid = container.inspect()["State"]["Pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(UID)] * 4, status
    assert "soest-gateway" in Path(f"/proc/{pid}/cmdline").read_text()

    probe = ("import os, sys\n"
             "for d in sys.argv[1:]:\n"
             "    try:\n"
             "        p = os.path.join(d, '.write-probe'); open(p, 'w').close(); os.remove(p); print(d, 'writable')\n"
             "    except OSError as e:\n"
             "        print(d, 'refused', e.errno)\n")
    places = ["/", "/app", "/config", "/opt/venv", "/opt/venv/bin", "/etc", "/usr", "/tmp", "/var/tmp", "/root",
              "/data"]
    # Read-only root (as in the compose file): /data is the only place left.
    result = container.exec("python", "-c", probe, *places)
    assert result.returncode == 0, result.stderr
    verdict = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert [p for p in places if verdict[p] == "writable"] == ["/data"], verdict
    # Without --read-only (a plain `docker run`) the image's own permissions keep uid 10001 out of
    # everything but /data and the world-writable /tmp and /var/tmp.
    result = podman("run", "--rm", *ONESHOT_FLAGS, "-v", f"{volume}:/data", "--entrypoint", "python", image.tag,
                    "-c", probe, *places, check=False)
    assert result.returncode == 0, result.stderr
    verdict = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert {p for p in places if verdict[p] == "writable"} == {"/data", "/tmp", "/var/tmp"}, verdict


def test_the_data_volume_survives_a_new_container_and_its_values_come_back(
        image: Built, tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, volume: str,
        containers: list[Container]):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    http_port = free_port()
    first = gateway(image, config, broker, volume, http_port).start()
    containers.append(first)
    retained_tree(broker.port, {TEMPERATURE}, timeout=30)
    podman("stop", "--time", "10", first.name, timeout=30)
    assert first.wait() == 0, first.logs()
    state = volume_path(volume) / "state.json"
    assert state.stat().st_uid == UID
    saved = json.loads(state.read_text())
    assert saved["entities"]["soest_brightsky_temperature"][0] == "24.3"
    podman("rm", first.name)
    containers.remove(first)

    # A fresh broker with nothing retained, and Bright Sky down: only the volume can bring 24.3 back.
    broker.stop()
    (tmp_path / "second").mkdir()
    fresh = Mosquitto(tmp_path / "second").start()
    upstream.serve("/current_weather", b'{"detail":"down"}', status=500)
    sub = Subscriber(fresh.port, "soest/brightsky/#", live=True)
    second = gateway(image, config, fresh, volume, http_port).start()
    containers.append(second)
    try:
        message = sub.wait_for(TEMPERATURE, timeout=30)
        assert message.payload == b"24.3"
        assert message.retain is True
        assert message.qos == 1
        sub.wait_for("soest/brightsky/fetch_errors", timeout=30)  # it did try upstream, and it failed
        assert retained_tree(fresh.port, {TEMPERATURE})[TEMPERATURE] == b"24.3"
        assert "restored" in second.logs()
    finally:
        sub.close()
        second.remove()
        fresh.stop()


# --------------------------------------------------------------------------- hygiene

# Run inside the image as root (so that nothing is hidden by permissions): compilers and download
# tools on PATH, packaging tools in the gateway's venv, files left in build and cache folders.
LEFTOVERS = """
import glob, os, shutil, sysconfig
site = sysconfig.get_paths()["purelib"]
print("site", site)
for tool in ("gcc", "cc", "c++", "g++", "make", "ld", "as", "git", "curl", "wget", "rustc", "cargo"):
    print("tool", tool, shutil.which(tool))
for pkg in ("pip", "setuptools", "wheel"):
    print("venv", pkg, bool(glob.glob(os.path.join(site, pkg)) + glob.glob(os.path.join(site, pkg + "-*"))))
for path in ("/wheels", "/src", "/root/.cache", "/tmp", "/var/lib/apt/lists", "/var/cache/apt/archives"):
    found = glob.glob(path + "/**", recursive=True) if os.path.isdir(path) else []
    print("files", path, len([p for p in found if os.path.isfile(p)]))
"""


def test_the_image_carries_its_metadata_and_no_build_leftovers(image: Built):
    (info,) = json.loads(podman("image", "inspect", image.tag).stdout)
    config = info["Config"]
    labels = config["Labels"]
    for key in ("title", "description", "source", "url", "documentation", "licenses", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    # The docker format keeps the HEALTHCHECK (the OCI format would silently drop it).
    assert info["Healthcheck"]["Test"][:3] == ["CMD", "python", "-c"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["soest-gateway"]
    # A compiler or a pip cache would show here long before anyone reads the layer list.
    assert info["Size"] < 200_000_000, f"{info['Size'] / 1e6:.0f} MB"

    result = podman("run", "--rm", *ONESHOT_FLAGS, "--user", "0", "--entrypoint", "python", image.tag, "-c",
                    LEFTOVERS, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" ") for line in result.stdout.splitlines()]
    assert ["site", "/opt/venv/lib/python3.11/site-packages"] in rows  # the gateway's own interpreter
    assert [r[1] for r in rows if r[0] == "tool" and r[2] != "None"] == []
    assert [r[1] for r in rows if r[0] == "venv" and r[2] != "False"] == []
    assert {r[1]: int(r[2]) for r in rows if r[0] == "files"} == {
        "/wheels": 0, "/src": 0, "/root/.cache": 0, "/tmp": 0, "/var/lib/apt/lists": 0, "/var/cache/apt/archives": 0}
