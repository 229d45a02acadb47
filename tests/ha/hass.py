"""A real Home Assistant core as a subprocess: its config dir, its REST and websocket APIs, its log.

The venv comes from scripts/ensure-ha. The config dir is written the way HA itself leaves one after
onboarding: an owner user with a long-lived access token in the auth storage (the token is the JWT
HA would hand out, signed with the refresh token's key), onboarding marked done, and the MQTT
integration as a config entry pointing at the test broker.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helpers import free_port, wait_until

HA_VERSION = "2025.4.4"
# Home Assistant's own log lines: "2026-12-03 07:10:00.123 WARNING (MainThread) [logger.name] message".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (?P<level>[A-Z]+) \([^)]*\) \[(?P<logger>[^\]]+)\] ",
                        re.M)


def venv() -> Path:
    """Where scripts/ensure-ha puts (or put) the Home Assistant venv."""
    default = Path.home() / ".cache" / "soest-gateway" / f"ha-{HA_VERSION}"
    return Path(os.environ.get("SOEST_HA_VENV") or default)


def venv_problem() -> str | None:
    """Why the venv cannot be used, or None when it is complete."""
    path = venv()
    if not (path / ".soest-ready").is_file() or not (path / "bin" / "hass").is_file():
        return f"no Home Assistant {HA_VERSION} venv at {path} (run scripts/ensure-ha)"
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: str, claims: dict[str, Any]) -> str:
    """An HS256 JSON web token, as HA's auth manager signs a long-lived access token."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def _store(path: Path, key: str, data: dict[str, Any], version: int = 1, minor: int = 1) -> None:
    path.write_text(json.dumps({"version": version, "minor_version": minor, "key": key, "data": data}))


def write_config_dir(config: Path, http_port: int, broker_port: int) -> str:
    """A fresh HA config dir; returns the access token for its owner."""
    storage = config / ".storage"
    storage.mkdir(parents=True)
    (config / "configuration.yaml").write_text(
        "homeassistant:\n"
        "  name: Test\n  latitude: 51.571\n  longitude: 8.106\n  elevation: 98\n"
        "  unit_system: metric\n  time_zone: Europe/Berlin\n  country: DE\n  currency: EUR\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n"
        "api:\n"
        "logger:\n  default: info\n")
    now = datetime.now(UTC)
    user_id = uuid.uuid4().hex
    token_id = uuid.uuid4().hex
    jwt_key = secrets.token_hex(64)
    _store(storage / "auth", "auth", {
        "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True, "is_active": True,
                   "name": "Test", "system_generated": False, "local_only": False}],
        "groups": [{"id": "system-admin", "name": "Administrators"},
                   {"id": "system-users", "name": "Users"},
                   {"id": "system-read-only", "name": "Read Only"}],
        "credentials": [],
        "refresh_tokens": [{
            "id": token_id, "user_id": user_id, "client_id": None, "client_name": "soest-gateway tests",
            "client_icon": None, "token_type": "long_lived_access_token", "created_at": now.isoformat(),
            "access_token_expiration": 3650 * 86400.0, "token": secrets.token_hex(64), "jwt_key": jwt_key,
            "last_used_at": None, "last_used_ip": None, "expire_at": None, "credential_id": None,
            "version": HA_VERSION,
        }],
    })
    _store(storage / "onboarding", "onboarding", {"done": ["user", "core_config", "analytics", "integration"]},
           version=4)
    _store(storage / "core.config_entries", "core.config_entries", {"entries": [{
        "entry_id": uuid.uuid4().hex, "version": 1, "minor_version": 2, "domain": "mqtt", "title": "127.0.0.1",
        "data": {"broker": "127.0.0.1", "port": broker_port}, "options": {},
        "pref_disable_new_entities": False, "pref_disable_polling": False, "source": "user",
        "unique_id": None, "disabled_by": None, "created_at": now.isoformat(), "modified_at": now.isoformat(),
        "discovery_keys": {}, "subentries": [],
    }]}, minor=5)
    stamp = int(now.timestamp())
    return _jwt(jwt_key, {"iss": token_id, "iat": stamp, "exp": stamp + 3650 * 86400})


class HomeAssistant:
    """``hass -c <dir>`` from the ensure-ha venv, with its APIs."""

    def __init__(self, config: Path, broker_port: int) -> None:
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = write_config_dir(config, self.port, broker_port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: list[float] = []  # launch to API ready, for each start
        self.stop_seconds: list[float] = []  # SIGTERM to exit

    @property
    def log_path(self) -> Path:
        return self.config / "home-assistant.log"

    @property
    def earlier_logs(self) -> Path:
        return self.config / "earlier-runs.log"

    def start(self, timeout: float = 60.0) -> None:
        # HA rolls home-assistant.log over at start and keeps one old file: collect every earlier
        # run's log, so that a restart hides none of its records.
        if self.log_path.exists():
            with self.earlier_logs.open("a") as earlier:
                earlier.write(self.log_path.read_text(errors="replace"))
            self.log_path.unlink()
        started = time.monotonic()
        out = (self.config / "hass.stdout").open("ab")
        self.proc = subprocess.Popen([str(venv() / "bin" / "hass"), "-c", str(self.config), "--skip-pip"],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

        def ready() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"hass exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                return self.rest("GET", "/api/config").get("state") == "RUNNING"
            except (OSError, urllib.error.URLError):
                return False

        wait_until(ready, timeout=timeout, interval=0.1)
        self.start_seconds.append(time.monotonic() - started)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.stop_seconds.append(time.monotonic() - started)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no home-assistant.log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_records(self, levels: tuple[str, ...], loggers: tuple[str, ...]) -> list[str]:
        """Whole log records (with continuation lines, e.g. tracebacks) at ``levels`` from ``loggers``."""
        text = "".join(p.read_text(errors="replace") for p in (self.earlier_logs, self.log_path) if p.exists())
        starts = list(LOG_RECORD.finditer(text))
        out = []
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            logger = m.group("logger")
            if m.group("level") in levels and any(logger == n or logger.startswith(n + ".") for n in loggers):
                out.append(text[m.start():end].rstrip())
        return out

    # ----------------------------------------------------------------- REST

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.rest("GET", "/api/states")}

    # ----------------------------------------------------------------- websocket

    def ws(self) -> WebSocket:
        sock = WebSocket(self.port, "/api/websocket")
        hello = sock.receive()
        assert hello["type"] == "auth_required", hello
        sock.send({"type": "auth", "access_token": self.token})
        answer = sock.receive()
        assert answer["type"] == "auth_ok", answer
        return sock

    def command(self, kind: str, **fields: Any) -> Any:
        with self.ws() as sock:
            return sock.call(kind, **fields)

    def registries(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(entity registry, device registry), read over one websocket connection."""
        with self.ws() as sock:
            return sock.call("config/entity_registry/list"), sock.call("config/device_registry/list")


class WebSocket:
    """A minimal RFC 6455 client (text frames, ping/pong, fragments): the test venv has no websocket library."""

    def __init__(self, port: int, path: str, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(4096)
            assert chunk, "websocket handshake: connection closed"
            self._buf += chunk
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head.decode(errors="replace")
        self._next_id = 1

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "websocket: connection closed"
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, message: dict[str, Any]) -> None:
        self._send_frame(0x1, json.dumps(message).encode())

    def receive(self) -> Any:
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)  # a server never masks its frames
            opcode = first & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise AssertionError(f"websocket closed by Home Assistant: {payload[2:].decode(errors='replace')}")
            elif opcode in (0x0, 0x1):
                parts.append(payload)
                if first & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, kind: str, **fields: Any) -> Any:
        """One command; its result, or an AssertionError with HA's error."""
        ident = self._next_id
        self._next_id += 1
        self.send({"id": ident, "type": kind, **fields})
        while True:
            answer = self.receive()
            if answer.get("id") == ident and answer.get("type") == "result":
                assert answer["success"], f"{kind}: {answer.get('error')}"
                return answer["result"]

    def close(self) -> None:
        with contextlib.suppress(OSError):  # HA may have closed first
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
