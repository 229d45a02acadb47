"""A private RabbitMQ node with the MQTT plugin, on free ports, for the tests that show why it is unsupported.

RabbitMQ 3.10 delivers retained messages only to subscriptions on the exact topic, never to
wildcard ones; the gateway must notice and say so. The node is the Debian package's server,
started as a process of our own (own node name, ports, database and Erlang cookie), so it does
not touch a RabbitMQ the machine may run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT_S = 60.0


def rabbitmq_installed() -> bool:
    return SERVER.exists() and shutil.which("erl") is not None


class RabbitMq:
    """``rabbitmq-server`` with ``rabbitmq_mqtt`` enabled; ``port`` is its MQTT listener."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        amqp, dist = free_port(), free_port()
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{amqp}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n")
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (workdir / ".erlang.cookie").write_text(uuid.uuid4().hex)
        (workdir / ".erlang.cookie").chmod(0o400)
        self.log_path = workdir / "rabbitmq.out"
        self._env = {**os.environ, "HOME": str(workdir),
                     "RABBITMQ_NODENAME": f"soest-test-{self.port}@localhost",
                     "RABBITMQ_NODE_PORT": str(amqp), "RABBITMQ_DIST_PORT": str(dist),
                     "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
                     "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
                     "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"), "RABBITMQ_LOG_BASE": str(workdir / "log"),
                     "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid")}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RabbitMq:
        with self.log_path.open("wb") as log:
            # Its own process group: the server script starts epmd and the Erlang VM as children.
            self.proc = subprocess.Popen([str(SERVER)], env=self._env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"RabbitMQ's MQTT listener did not open within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
