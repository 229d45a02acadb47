"""Test helpers: a real Mosquitto, a fixture HTTP server, a recording subscriber, a gateway process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from adapters import ADAPTERS
from gateway import catalog, contract, discovery
from gateway.config import load

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_CERTS = ROOT / "mosquitto" / "certs" / "test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# --------------------------------------------------------------------------- Mosquitto


class Mosquitto:
    """A broker started from one of the project's mosquitto/ configs, moved to free ports.

    Listener ports are remapped (``ports[1883]`` is where the config's 1883 listener ended up),
    the password file is created with mosquitto_passwd from ``users``, and the test
    certificates stand in for the real ones.
    """

    def __init__(self, workdir: Path, conf: str = "local.conf", persistence: bool = False,
                 port: int | None = None, extra: Iterable[str] = (), users: dict[str, str] | None = None,
                 server_cert: str = "server") -> None:
        self.workdir = workdir
        self.ports: dict[int, int] = {}
        self.port = port or free_port()
        passwd = workdir / "passwd"
        if users:
            binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            passwd.write_text("")
            for user, password in users.items():
                subprocess.run([binary, "-b", str(passwd), user, password], check=True, capture_output=True)
        self.conf_path = workdir / f"mosquitto-{self.port}.conf"
        certs = ROOT / "mosquitto" / "certs" / "test"
        lines = []
        for line in (ROOT / "mosquitto" / conf).read_text().splitlines():
            word = line.split(" ", 1)[0]
            if word == "listener":
                original = int(line.split()[1])
                self.ports[original] = self.port if original == 1883 else free_port()
                line = f"listener {self.ports[original]} 127.0.0.1"
            elif word in ("persistence", "persistence_location", "autosave_interval", "log_dest"):
                continue
            line = line.replace("mosquitto/passwd", str(passwd))
            line = line.replace("mosquitto/certs/server.", f"{certs}/{server_cert}.")
            line = line.replace(" mosquitto/", f" {ROOT}/mosquitto/")
            lines.append(line)
        lines.append(f"persistence {'true' if persistence else 'false'}")
        if persistence:
            lines.append(f"persistence_location {workdir}/")
        lines.append(f"log_dest file {workdir}/mosquitto-{self.port}.log")
        if os.geteuid() == 0:
            # As root Mosquitto would switch to the "mosquitto" user, which cannot read pytest's
            # private temp directory.
            lines.append("user root")
        lines.extend(extra)
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf_path)], cwd=self.workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, timeout=10)
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


# --------------------------------------------------------------------------- upstream HTTP


@dataclass
class Reply:
    status: int = 200
    # A callable is asked for the body at each request: fixtures whose meaning depends on the clock
    # (warnings that expire, a 3-hour look-ahead) are moved to the moment they are fetched.
    body: bytes | Callable[[], bytes] = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0
    reset: bool = False  # close the connection with a TCP RST instead of answering
    etag: str | None = None  # answer 304 when the client already has this version


class FixtureServer:
    """Serves canned upstream responses by path; tests swap replies at run time."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append((self.path, dict(self.headers)))
                reply = server.replies.get(path, Reply(404, b'{"detail":"not found"}'))
                if reply.delay:
                    time.sleep(reply.delay)  # an injected slow upstream (the "timeout" fault)
                if reply.etag is not None and self.headers.get("If-None-Match") == reply.etag:
                    self.send_response(304)
                    self.send_header("ETag", reply.etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if reply.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                body = reply.body() if callable(reply.body) else reply.body
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.etag is not None:
                    self.send_header("ETag", reply.etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many sources connect at once when the gateway starts

            def handle_error(self, request: object, client_address: object) -> None:
                # A client that timed out and hung up (an injected fault) is not our error.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, body: bytes | str | dict[str, Any] | Callable[[], bytes], status: int = 200,
              **kw: Any) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.replies[path] = Reply(status, body, **kw)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fresh_fixture(name: str, now: datetime | None = None) -> bytes:
    """A fixture file with its timestamps moved to ``now``, so max_age checks see fresh data."""
    text = (FIXTURES / name).read_text()
    stamp = (now or datetime.now(UTC)).replace(microsecond=0).isoformat()
    return re.sub(r'"(timestamp|last_record)":"[^"]+"', lambda m: f'"{m.group(1)}":"{stamp}"', text).encode()


# --------------------------------------------------------------------------- subscriber


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


def mqtt_client(protocol: int = paho.MQTTv5, transport: str = "tcp") -> paho.Client:
    """A paho client for ``protocol`` (``paho.MQTTv5`` or ``paho.MQTTv311``, e.g. for NATS)."""
    if protocol not in (paho.MQTTv5, paho.MQTTv311):
        raise ValueError(f"protocol must be paho.MQTTv5 or paho.MQTTv311, not {protocol!r}")
    # clean_session is a 3.1.1 argument (MQTT 5 has clean_start on connect); paho refuses it for 5.
    extra = {"clean_session": True} if protocol == paho.MQTTv311 else {}
    return paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol, transport=transport, **extra)


class SubscriptionRefused(AssertionError):
    """The broker answered SUBSCRIBE with a failure code (NATS does, for QoS 1, after a node loss)."""


class Subscriber:
    """A real MQTT client recording everything it receives."""

    def __init__(self, port: int, *filters: str, username: str | None = None, password: str | None = None,
                 live: bool = False, ca: Path | None = None, transport: str = "tcp",
                 protocol: int = paho.MQTTv5, timeout: float | None = None, qos: int = 1) -> None:
        """Subscribe to ``filters`` at ``qos`` over ``protocol``. With ``live``, retain flags are
        reported as published (MQTT 5 retain-as-published), so a test can check them on messages
        that arrive after subscribing; MQTT 3.1.1 has no such option (a broker clears the flag on
        live messages), so ``live`` with 3.1.1 is refused. A SUBACK with a failure code raises
        ``SubscriptionRefused``. ``timeout`` bounds the wait for the SUBACK: 5 s, or 15 s over
        3.1.1, as NATS answers a CONNECT only once JetStream has a leader and a failing QoS 1
        SUBSCRIBE only after its 4 s JetStream API timeout. On NATS, ``qos=0`` avoids the JetStream
        consumer that every QoS 1 subscription creates (and deletes again on disconnect, which
        nats-server 2.9 can stall on for 4 s); messages then arrive at QoS 0."""
        if live and protocol != paho.MQTTv5:
            raise ValueError("live (retain-as-published) needs MQTT 5; MQTT 3.1.1 clears retain on live messages")
        self.messages: list[Msg] = []
        self.filters = filters
        self.qos = qos
        self.granted: list[paho.ReasonCode] = []  # the SUBACK's codes, one per filter
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._synced: set[str] = set()  # sync markers that came back (never recorded as messages)
        self._sync_arrived = threading.Condition(self._lock)
        self.client = mqtt_client(protocol, transport)
        if username:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_suback
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if protocol == paho.MQTTv5:
            self.client.subscribe([(f, paho.SubscribeOptions(qos=qos, retainAsPublished=live)) for f in filters])
        else:
            self.client.subscribe([(f, qos) for f in filters])
        if not self._ready.wait(timeout or (5.0 if protocol == paho.MQTTv5 else 15.0)):
            self.close()
            raise AssertionError("subscription not acknowledged")
        refused = [f"{f}: {code}" for f, code in zip(filters, self.granted, strict=False) if code.is_failure]
        if refused:
            self.close()
            raise SubscriptionRefused(f"subscription refused on port {port}: {', '.join(refused)}")

    def _on_suback(self, client: paho.Client, userdata: object, mid: int, codes: list[paho.ReasonCode],
                   properties: object) -> None:
        self.granted = list(codes)
        self._ready.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            if msg.topic.startswith(SYNC_PREFIX):
                self._synced.add(msg.topic)
                self._sync_arrived.notify_all()
                return
            self.messages.append(Msg(msg.topic, msg.payload, msg.qos, bool(msg.retain)))

    def sync(self, timeout: float = 10.0) -> None:
        """Return once everything the broker had queued for this client has arrived.

        Mosquitto delivers to one client in order: the retained messages of our subscriptions are
        queued when it handles SUBSCRIBE, so a marker we publish to ourselves afterwards arrives
        after all of them (and after anything else published before it was handled). Needs a broker
        that lets this client publish and read ``sync/...`` (the tests' local.conf does).
        NATS writes a subscription's retained messages out while it handles SUBSCRIBE too, so the
        marker works there for the retained store; but it sends each QoS 1 subscription's live
        messages through its own JetStream consumer, so there the marker does not order live
        messages of other subscriptions.
        """
        token = f"{SYNC_PREFIX}{uuid.uuid4().hex}"
        acked = threading.Event()
        codes: list[paho.ReasonCode] = []

        def on_suback(client: paho.Client, userdata: object, mid: int, granted: list[paho.ReasonCode],
                      properties: object) -> None:
            codes.extend(granted)
            acked.set()

        self.client.on_subscribe = on_suback
        self.client.subscribe(token, qos=self.qos)
        assert acked.wait(timeout), "sync subscription not acknowledged"
        if any(code.is_failure for code in codes):
            raise SubscriptionRefused(f"sync subscription refused: {codes[0]}")
        self.client.publish(token, b"sync", qos=1)
        with self._lock:
            assert self._sync_arrived.wait_for(lambda: token in self._synced, timeout), "sync marker lost"
        self.client.unsubscribe(token)

    def snapshot(self) -> list[Msg]:
        with self._lock:
            return list(self.messages)

    def latest(self) -> dict[str, Msg]:
        out: dict[str, Msg] = {}
        for m in self.snapshot():
            out[m.topic] = m
        return out

    def on(self, topic: str) -> list[Msg]:
        return [m for m in self.snapshot() if m.topic == topic]

    def mark(self) -> int:
        """A position in the message log, for ``wait_for(..., after=...)``."""
        with self._lock:
            return len(self.messages)

    def wait_for(self, topic: str, payload: bytes | str | None = None, timeout: float = 10.0,
                 after: int = 0) -> Msg:
        """The newest message on ``topic`` (with ``payload``) received after position ``after``."""
        want = payload.encode() if isinstance(payload, str) else payload

        def found() -> Msg | None:
            for m in reversed(self.snapshot()[after:]):
                if m.topic == topic and (want is None or m.payload == want):
                    return m
            return None

        return wait_until(found, timeout)  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SYNC_PREFIX = "test-sync/"


def publish(port: int, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1,
            username: str | None = None, password: str | None = None, protocol: int = paho.MQTTv5) -> None:
    client = mqtt_client(protocol)
    if username:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def late_will(port: int, topic: str, payload: bytes = b"offline", protocol: int = paho.MQTTv5) -> None:
    """Make the broker publish a retained Last Will on ``topic`` now, as it does for a connection
    that ends without a DISCONNECT (a rival gateway's old session, a taken-over one)."""
    client = mqtt_client(protocol)
    client.will_set(topic, payload, qos=1, retain=True)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not connected.is_set() and time.monotonic() < deadline:
        client.loop(0.05)
    assert connected.is_set(), "no CONNACK for the client whose Will is to fire"
    sock = client.socket()
    sock.shutdown(socket.SHUT_RDWR)  # a FIN without DISCONNECT: the broker publishes the Will
    sock.close()


# --------------------------------------------------------------------------- gateway


def write_config(path: Path, upstream: str, *, base: str = "soest", slug: str = "soest",
                 edit: Callable[[dict[str, Any]], None] | None = None, fast_reconnect: bool = True) -> Path:
    """The default topics.yaml, pointed at the fixture server and made quick for tests."""
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    data["city"]["slug"] = slug
    data["mqtt"]["base_topic"] = base
    data["mqtt"]["birth_delay"] = "0.4s"
    # Every fixture API lives on one local host; the per-host spacing is for real servers.
    data["http"] = {"per_host_interval": 0}
    if fast_reconnect:
        data["mqtt"]["reconnect_max"] = "1s"
        data["mqtt"]["reconnect_min"] = "0.2s"
    for source in data["sources"].values():
        if source["adapter"] != "sun":
            source["base_url"] = upstream
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def brightsky_config(path: Path, upstream: FixtureServer, fast_reconnect: bool = True, **brightsky: Any) -> Path:
    """Only Bright Sky (served fresh by ``upstream``) and the sun, with ``brightsky`` overrides."""
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))

    def edit(data: dict[str, Any]) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k in ("brightsky", "sun")}
        data["sources"]["brightsky"].update(brightsky)

    return write_config(path, upstream.url, edit=edit, fast_reconnect=fast_reconnect)


class GatewayProcess:
    """``python -m gateway run`` as a subprocess, as a user would start it.

    Every instance is listed in ``started`` until it exits, so that conftest can stop what a
    failing test left running (it would otherwise publish into the brokers of later tests).
    """

    started: ClassVar[list[GatewayProcess]] = []

    def __init__(self, config: Path, port: int, *, env: dict[str, str] | None = None,
                 args: Iterable[str] = ()) -> None:
        self.log_path = config.with_suffix(".log")
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "GATEWAY_MQTT_HOST": "127.0.0.1", "GATEWAY_MQTT_PORT": str(port),
                    "GATEWAY_HTTP_PORT": "off", "GATEWAY_DATA_DIR": str(config.parent / "data"),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config),
                                      "--log-level", "debug", *args],
                                     cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        GatewayProcess.started.append(self)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


# --------------------------------------------------------------------------- tree snapshots

FILTERS = ("soest/#", "homeassistant/#")


def expected_tree(config: Path, states: Iterable[str] | None = None) -> set[str]:
    """Retained topics a subscriber must find, from the code's own contract.

    Always the gateway's topics, the fetch-error counters and every discovery config; plus the
    given entity ``states``, and the attributes, status and last-fetch topics of their sources.
    The sun's states always count: it is computed locally and always has values.
    """
    cat = catalog.build(load(config), ADAPTERS)
    rows = {r.topic for r in contract.expand(cat, list(discovery.configs(cat))) if r.retained}
    entity_topics = {t for e in cat.entities() for t in (e.state_topic, e.attributes_topic)}
    per_source = {t for s in cat.sources.values() for t in (s.status_topic, s.last_fetch_topic)}
    wanted = set(states or ()) | {e.state_topic for e in cat.entities() if e.source == "sun"}
    sources = {e.source for e in cat.entities() if e.state_topic in wanted}
    # Attributes go out for every entity of a fetched source, with a note when the value is missing.
    extra = {e.state_topic for e in cat.entities() if e.state_topic in wanted}
    extra |= {e.attributes_topic for e in cat.entities() if e.source in sources}
    extra |= {t for s in cat.sources.values() if s.key in sources for t in (s.status_topic, s.last_fetch_topic)}
    return (rows - entity_topics - per_source) | extra


def retained_tree(port: int, expected: set[str], timeout: float = 15.0,
                  protocol: int = paho.MQTTv5, qos: int = 1, filters: tuple[str, ...] = FILTERS) -> dict[str, bytes]:
    """What a newly connecting subscriber receives: the broker's retained store.

    Messages delivered because of the subscription carry the retain flag; live publishes that
    happen to arrive meanwhile do not, and are ignored. Resubscribes until ``expected`` is there
    (also when NATS refuses the subscription for a while after a node loss). Subscribes at
    ``qos`` and checks that the retained messages arrive at it: QoS 1 (the default) proves they
    were published at QoS 1; ``qos=0`` spares a NATS cluster the JetStream consumers (see
    ``Subscriber``) but proves nothing about the publisher's QoS. ``filters``: for a tree under
    another base topic.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            msgs = _fresh_retained(port, protocol, qos, filters)
        except SubscriptionRefused:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        tree = {m.topic: m.payload for m in msgs if m.retain}
        if expected <= {t for t, p in tree.items() if p} or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # poll interval: the gateway is still publishing what is missing
    missing = expected - set(tree)
    assert not missing, f"missing retained topics: {sorted(missing)}"
    assert all(m.qos == qos for m in msgs if m.retain)
    return tree


def _fresh_retained(port: int, protocol: int, qos: int, filters: tuple[str, ...]) -> list[Msg]:
    sub = Subscriber(port, *filters, protocol=protocol, qos=qos)
    try:
        sub.sync()  # the whole retained store has arrived, however slow the machine
        return sub.snapshot()
    finally:
        sub.close()


# --------------------------------------------------------------------------- ordering markers


def barrier(sub: Subscriber, port: int, username: str | None = None, password: str | None = None,
            topic: str = "soest/test/barrier", protocol: int = paho.MQTTv5) -> int:
    """Wait until everything the broker queued for ``sub`` before now has arrived; return a mark.

    The broker delivers one client's messages in order, and a subscription's retained messages
    before anything published after it. So once a fresh marker published now has arrived, so
    has everything before it: a test can then assert that something did *not* arrive, without
    sleeping and hoping. ``topic`` must match one of ``sub``'s filters (and the ACL, if any).
    """
    token = f"{topic}/{os.urandom(4).hex()}"
    publish(port, token, "barrier", username=username, password=password, protocol=protocol)
    sub.wait_for(token)
    return next(i for i, m in enumerate(sub.snapshot()) if m.topic == token)
