"""The container tests' engine: podman with runc, images built by scripts/build-image.

Tests marked ``container`` build the image (once per session; podman's layer cache and the cached
base rootfs make a rebuild take seconds) and run it on the host network, next to the Mosquitto and
the fixture servers the other tests use. Where podman cannot run (not installed and no root to
install it, or no container can be started) they are skipped with the reason, or fail under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

BUILD = ROOT / "scripts" / "build-image"
IMAGE = "soest-mqtt-gateway"  # scripts/build-image's default tags
ADDON_IMAGE = "soest-mqtt-gateway-addon"
# crun (podman's default elsewhere) fails here on rlimits and cgroups; runc needs the limits
# spelled out, as the defaults it inherits cannot be applied inside this kind of machine.
RUN_FLAGS = ("--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
             # No systemd timer for the HEALTHCHECK (there is no systemd here): the tests run it.
             "--health-interval", "disable")
# A one-off command (check-config, a probe) has no use for the HEALTHCHECK, and without it podman
# does not print its complaints about the missing systemd into the command's stderr.
ONESHOT_FLAGS = (*RUN_FLAGS[:-2], "--no-healthcheck")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"container tests cannot run: {reason}")
    pytest.skip(f"container tests skipped: {reason}")


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exit {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float  # how long scripts/build-image took in this session (cold or cached)
    log: str


def _build(*args: str) -> Built:
    if shutil.which("podman") is None and os.geteuid() != 0:
        _unavailable("podman is not installed and installing it needs root (apt-get install podman buildah "
                     "runc debootstrap)")
    start = time.monotonic()
    proc = subprocess.run([str(BUILD), "--engine", "podman", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if "no Docker daemon, and" in out or "debootstrap failed" in out:
            _unavailable(out.strip().splitlines()[-1])
        pytest.fail(f"scripts/build-image {' '.join(args)} failed (exit {proc.returncode}):\n{out[-4000:]}")
    return Built(tag=ADDON_IMAGE if "--addon" in args else IMAGE, seconds=seconds, log=proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def image() -> Built:
    built = _build()
    # Can a container start at all here (runc, rlimits, mounts)? A clear skip beats twenty failures.
    probe = podman("run", "--rm", *ONESHOT_FLAGS, "--entrypoint", "true", built.tag, check=False, timeout=120)
    if probe.returncode != 0:
        _unavailable(f"podman cannot start a container here: {probe.stderr.strip().splitlines()[-1:]}")
    return built


@pytest.fixture(scope="session")
def addon_image(image: Built) -> Built:
    return _build("--addon")


@dataclass
class Container:
    """One ``podman run -d`` of an image; removed (with its anonymous volumes) at the end of the test."""

    image: str
    args: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    name: str = field(default_factory=lambda: f"soest-test-{uuid.uuid4().hex[:12]}")

    def start(self) -> Container:
        podman("run", "-d", "--name", self.name, *RUN_FLAGS, *self.args, self.image, *self.command, timeout=120)
        return self

    def inspect(self) -> dict[str, Any]:
        return json.loads(podman("inspect", "--type", "container", self.name).stdout)[0]

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *cmd: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        return podman("exec", *(["--user", user] if user else []), self.name, *cmd, check=False)

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def wait(self, timeout: float = 30) -> int:
        proc = podman("wait", self.name, timeout=timeout)
        return int(proc.stdout.strip().splitlines()[-1])

    def remove(self) -> None:
        podman("rm", "-f", "-v", "--time", "2", self.name, check=False, timeout=60)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    """Containers a test starts (append them); removed afterwards, also when the test failed."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


@pytest.fixture
def volume() -> Iterator[str]:
    """A fresh named volume: the image's /data is copied into it (owner 10001) at first use."""
    name = f"soest-test-data-{uuid.uuid4().hex[:12]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


def volume_path(name: str) -> Path:
    return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())
