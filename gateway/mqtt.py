"""The broker connection: the only module that talks to our broker (paho-mqtt).

Upstream brokers that push are gateway.push's, through aiomqtt.

One long-lived session (MQTT 5, or 3.1.1 where the broker speaks only that), with a Last Will
when there is a status topic. A thread of ours
runs paho's network loop and reconnects with capped exponential backoff and jitter. Retained
messages go through the outbox (gateway.outbox), so nothing queues up while the broker is away:
on every connect the whole retained tree is sent again, because the broker may have lost it.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.availability import StatusGuard
from gateway.config import Broker
from gateway.expiry import remaining
from gateway.flow import NEAR_WINDOW, AckWindow, window_for
from gateway.metrics import Metrics
from gateway.nodes import MQTT5, MQTT311, Nodes
from gateway.outbox import Outbox, TopicClass
from gateway.subscriptions import Subscriptions
from gateway.topics import OFFLINE, ONLINE

log = logging.getLogger(__name__)


# The largest packet we accept by default (MQTT 5 CONNECT property Maximum Packet Size): the
# broker then drops bigger messages instead of sending them. The biggest thing the gateway ever
# receives is a retained discovery config of its own (about 1 KB); commands are a few bytes.
MAX_INCOMING_PACKET = 64 * 1024


# Distinct message expiry intervals whose packed properties are kept: a batch of one fetch
# mostly shares one observation time, so one interval; more would only grow with every second.
EXPIRY_PROPERTIES_KEPT = 64

# Protocol versions by the names GATEWAY_MQTT_PROTOCOL uses.
PROTOCOLS = {MQTT5: paho.MQTTv5, MQTT311: paho.MQTTv311}
# The CONNACK reason "unsupported protocol version"; paho maps MQTT 3.1.1's return code 1 to it.
UNSUPPORTED_PROTOCOL = 132
CLOSED_BEFORE_CONNACK = "closed the connection before answering CONNECT"


def new_client(client_id: str, broker: Broker, protocol: str = MQTT5, inflight: int = NEAR_WINDOW) -> paho.Client:
    """A paho client for one connection attempt; the one place that picks the protocol version."""
    # MQTT 3.1.1 sets its clean session here, MQTT 5 its clean start in connect().
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=PROTOCOLS[protocol],
                         clean_session=True if protocol != MQTT5 else None, reconnect_on_failure=False)
    configure_security(client, broker)
    # 0 = no limit in paho; bounded anyway, because each connection gets a fresh client and
    # nothing is published while disconnected (latest values wait in the outbox).
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(inflight)
    return client


class _PackedOnce(Properties):
    """Publish properties that are packed once: paho packs them again for every message, slowly."""

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = super().pack()
            object.__setattr__(self, "_packed", packed)  # Properties refuses unknown attribute names
        return packed


class _Connection:
    """The connection/reconnect loop: a fresh paho client per connection, subscriptions made again.

    Which node and MQTT version to try is ``Nodes``' choice (gateway.nodes): the next node when one
    is lost or refuses; with protocol ``auto`` MQTT 5, and 3.1.1 for a node that refuses 5 or
    closes the connection before CONNACK. Every SUBACK is checked (gateway.subscriptions);
    refused subscriptions are tried again with backoff.

    ``will_topic`` None: no Last Will and no online/offline messages (a one-off tool like purge).
    ``on_connect_failed(reason, refused)`` hears of every failed attempt; the loop retries anyway.
    ``max_packet`` None: accept messages of any size.
    """

    def __init__(self, broker: Broker, client_id: str, will_topic: str | None, metrics: Metrics, keepalive: int,
                 backoff: tuple[float, float], max_packet: int | None, on_connect: Callable[[bool], object] | None,
                 on_connect_failed: Callable[[str, bool], object] | None,
                 on_message: Callable[[str, bytes, bool], object] | None) -> None:
        self._broker = broker
        self._client_id = client_id
        self._will_topic = will_topic
        self._metrics = metrics
        self._keepalive = keepalive
        self._max_packet = max_packet
        self._on_connect = on_connect
        self._on_connect_failed = on_connect_failed
        self._on_message = on_message
        self._subs = Subscriptions(ok=lambda rc: rc == paho.MQTT_ERR_SUCCESS)
        self._guard = StatusGuard()
        self.set_will(will_topic)
        self._nodes = Nodes(broker.endpoints, broker.protocol, backoff)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._session_over = threading.Event()
        self._renew = threading.Event()  # the session was ended on purpose: connect again at once
        self._thread: threading.Thread | None = None
        self._connections = 0
        self._refusals = _Refusals(self._nodes, on_connect_failed)
        self._address, self._protocol = self._nodes.next()
        self._connack = False
        self._gave_up = False  # no CONNACK in time: we closed the connection, the broker did not
        self._retry_now = False  # the same node again at once, in the version it turned out to speak
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def connections(self) -> int:
        """Successful connections so far (1 = never reconnected)."""
        return self._connections

    @property
    def protocol(self) -> str:
        """The MQTT version of the current (or the last attempted) connection: "5" or "3.1.1"."""
        return self._protocol

    @property
    def address(self) -> tuple[str, int]:
        """The node of the current (or the last attempted) connection."""
        return self._address

    @property
    def subscriptions(self) -> Subscriptions:
        """What the broker answered to each subscription (``states()``, ``failed()``)."""
        return self._subs

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now and after every reconnect (at QoS 1, or 0 if ``qos`` says so)."""
        if self._subs.add(topic_filter, qos) and self.connected:
            self._subs.send(self._client, topic_filter)

    def set_will(self, topic: str | None) -> None:
        """The Last Will (and online/offline) topic, from the next connection on; ``reconnect`` makes that now."""
        if self._will_topic is not None:
            self._subs.remove(self._will_topic)
        self._will_topic = topic
        if topic is not None:
            self._subs.add(topic, qos=0)  # a false offline there is answered (gateway.availability)

    def reconnect(self) -> None:
        """DISCONNECT (no Last Will fires) and connect again at once; publishes wait in the outbox meanwhile."""
        self._renew.set()
        self._connected.clear()
        self._client.disconnect()

    def unsubscribe(self, topic_filter: str) -> None:
        self._subs.remove(topic_filter)
        if self.connected:
            self._client.unsubscribe(topic_filter)

    # ------------------------------------------------------------------ hooks for the sending side

    def _session_started(self, client: paho.Client, connack: object) -> None:
        """On paho's network thread, before ``connected`` turns true; ``connack``: the CONNACK's properties."""

    def _session_ended(self) -> None:
        """The connection is gone, with whatever was in flight on it."""

    def _say_online(self) -> None:
        """Our status topic said ``offline`` while we are connected with a Will on it."""

    def _acked(self, mid: int) -> None:
        """The broker acknowledged the QoS 1 publish ``mid``."""

    def _inflight(self) -> int:
        """The in-flight window for the next client."""
        return NEAR_WINDOW if self._broker.inflight == "auto" else int(self._broker.inflight)

    # ------------------------------------------------------------------ the loop

    def _make_client(self) -> paho.Client:
        client = new_client(self._client_id, self._broker, self._protocol, self._inflight())
        self._client_will = self._will_topic
        if self._will_topic is not None:
            client.will_set(self._will_topic, OFFLINE, qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_publish = lambda c, u, mid, *rest: self._acked(mid)
        return client

    def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            self._address, self._protocol = self._nodes.next()
            if not first:
                # A fresh client per connection: the old one may still hold unacknowledged
                # publishes that paho would re-send after our newer values. The outbox re-sends
                # everything that matters anyway.
                self._client = self._make_client()
            first = False
            if self._connect():
                # paho's own network thread: publishes from other threads are then queued and
                # written in batches by it, instead of one send() per message from the caller.
                self._session_over.clear()
                self._client.loop_start()
                self._await_session()
                self._client.loop_stop()
                if self._stopping.is_set():
                    break
                if self._renew.is_set():  # ended on purpose (a new Last Will): the same node, at once
                    self._renew.clear()
                    continue
                if self._retry_now:  # the same node again, in the version it turned out to speak
                    self._retry_now = False
                    continue
            self._nodes.failed()
            self._stopping.wait(self._nodes.pause())

    def _await_session(self) -> None:
        """Until the connection ends; gives up on a CONNECT the broker does not answer in time."""
        deadline = time.monotonic() + self._nodes.connack_timeout()
        while not self._session_over.wait(0.25) and not self._stopping.is_set():
            if not self._connack and time.monotonic() > deadline:
                if self._gave_up:
                    return  # paho never reported the close
                self._gave_up = True
                self._nodes.unanswered_in_time(self._address, self._protocol,
                                               _level(self._nodes.failures + 1, logging.WARNING))
                self._client.disconnect()  # paho closes the socket once DISCONNECT is written
                deadline += 2.0
            for topic_filter in self._subs.due():
                self._subs.send(self._client, topic_filter)
            if self._guard.due(time.monotonic()) and self._connected.is_set() and not self._stopping.is_set():
                self._say_online()

    def _connect(self) -> bool:
        self._connack = self._gave_up = False
        failure = _try_open(self._client, self._address, self._protocol, self._keepalive, self._max_packet,
                            _level(self._nodes.failures + 1, logging.WARNING))
        if failure is not None and self._on_connect_failed is not None:
            self._on_connect_failed(failure, False)
        return failure is None

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _handle_connect(self, client: paho.Client, userdata: object, flags: object,
                        reason: ReasonCode, properties: object) -> None:
        host, port = self._address
        self._connack = True
        if reason.is_failure:
            # With protocol auto, MQTT 3.1.1 next on a node that would not take MQTT 5.
            self._retry_now = reason.value == UNSUPPORTED_PROTOCOL and self._nodes.fall_back(
                self._address, self._protocol, "refused MQTT 5 (unsupported version)")
            if self._retry_now:
                self._session_over.set()
                return
            self._session_over.set()
            self._refusals.refused(self._address, str(reason))
            return
        if self._client_will != self._will_topic:  # set_will() came while this connection was being made
            self.reconnect()
            return
        self._refusals.count = 0
        self._nodes.connected(self._address, self._protocol)
        log.info("connected to MQTT broker %s:%s (MQTT %s)", host, port, self._protocol)
        self._session_started(client, properties)
        self._session_ready(client)

    def _session_ready(self, client: paho.Client) -> None:
        """Subscribe, and tell the owner: from now on ``connected`` is true."""
        self._connections += 1
        self._guard.reset()
        if self._connections > 1:
            self._metrics.reconnects.inc()
        self._subs.start_session(client, self._connected.set)
        self._metrics.connected.set(1)
        if self._on_connect is not None:
            self._on_connect(self._connections == 1)

    def _handle_subscribe(self, client: paho.Client, userdata: object, mid: int,
                          reasons: list[ReasonCode], properties: object) -> None:
        refused = [r for r in reasons if r.is_failure] if reasons else ["no reason given"]
        host, port = self._address
        self._subs.answered(mid, not refused, f"{host}:{port}", str(refused[0]) if refused else "")

    def _handle_disconnect(self, client: paho.Client, userdata: object, flags: object,
                           reason: ReasonCode, properties: object) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._session_over.set()
        self._session_ended()
        self._metrics.connected.set(0)
        closed_early = not self._connack and not self._stopping.is_set() and not self._gave_up
        self._retry_now = closed_early and self._nodes.fall_back(self._address, self._protocol,
                                                                 f"{CLOSED_BEFORE_CONNACK} (MQTT 5)")
        if closed_early and not self._retry_now:
            self._refusals.closed_early(self._address, self._protocol)
        if was_connected and not self._stopping.is_set():
            log.warning("lost the MQTT connection to %s:%s (%s); keeping the latest values and reconnecting",
                        *self._address, reason)

    def _handle_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self._guard.heard(message.topic, message.payload, self._client_will, self._will_topic)
        # The broker should not send more than we asked for; a broker that does is not trusted either.
        if self._on_message is not None and (self._max_packet is None or len(message.payload) <= self._max_packet):
            self._on_message(message.topic, message.payload, bool(message.retain))


class _Refusals:
    """Connections a broker refused, or closed before CONNACK: logged ever less often, told to the owner."""

    def __init__(self, nodes: Nodes, report: Callable[[str, bool], object] | None) -> None:
        self._nodes = nodes
        self._report = report
        self.count = 0  # in a row, since the last successful connection

    def refused(self, address: tuple[str, int], reason: str) -> None:
        self.count += 1
        log.log(_level(self.count, logging.ERROR), "MQTT broker %s:%s refused the connection: %s (%d times)",
                *address, reason, self.count)
        self._tell(reason)

    def closed_early(self, address: tuple[str, int], protocol: str) -> None:
        # RabbitMQ drops an MQTT 5 CONNECT without a word; a broker may do the same to bad credentials.
        self.count += 1
        self._nodes.closed_early(address, protocol, CLOSED_BEFORE_CONNACK, _level(self.count, logging.ERROR))
        self._tell(CLOSED_BEFORE_CONNACK)

    def _tell(self, why: str) -> None:
        if self._report is not None:
            self._report(why, True)


class MqttLink(_Connection):
    """Publishes to and subscribes at one broker, surviving its outages.

    Retained payloads are kept in the outbox and sent again after every connect; QoS 1 publishes
    wait while the ack window is full.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        client_id: str,
        will_topic: str | None,
        metrics: Metrics,
        qos: int = 1,
        keepalive: int = 60,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        max_packet: int | None = MAX_INCOMING_PACKET,
        on_connect: Callable[[bool], object] | None = None,
        on_connect_failed: Callable[[str, bool], object] | None = None,
        on_message: Callable[[str, bytes, bool], object] | None = None,
    ) -> None:
        self._probe: tuple[int, float, paho.Client] | None = None  # mid, sent at, client
        self._receive_max = 65_535
        self._windows: dict[tuple[str, int], int] = {}  # node -> the in-flight window that suits it
        super().__init__(broker, client_id, will_topic, metrics, keepalive, (reconnect_min, reconnect_max),
                         max_packet, on_connect, on_connect_failed, on_message)
        self._qos = qos
        self._outbox = Outbox()
        self._window = AckWindow()
        self._expiry_props: dict[int, Properties] = {}
        self._counters = {c: metrics.publishes.labels(kind=c.label) for c in TopicClass}
        self._last_info: paho.MQTTMessageInfo | None = None

    @property
    def in_flight(self) -> int:
        """How many QoS 1 publishes may be unacknowledged at once on the current connection."""
        return self._client.max_inflight_messages

    @property
    def window_settled(self) -> bool:
        """False while ``auto`` still waits for the first acknowledgement from this node."""
        return self._broker.inflight != "auto" or self._address in self._windows

    @property
    def expiry_supported(self) -> bool:
        """MQTT 5 message expiry: the broker drops stale retained values by itself."""
        return self._protocol == MQTT5

    def publish(self, topic: str, payload: bytes, cls: TopicClass, *, retain: bool = True,
                ends_at: float | None = None) -> None:
        """Send now if connected; retained payloads are also kept for the next connect.

        ``ends_at`` is when the data goes stale (epoch seconds): every send carries the MQTT 5
        message expiry left until then, so the broker drops the value at that moment, and after
        it the value is not sent at all (gateway.expiry.remaining).
        """
        expiry = remaining(ends_at, time.time()) if ends_at is not None else None
        if ends_at is not None and expiry is None:
            return
        connected = self._connected.is_set()
        if retain:
            self._outbox.keep(topic, payload, cls, ends_at, self._connections if connected else 0)
        if connected:
            self._send(topic, payload, cls, retain, expiry)

    def send(self, topic: str, payload: bytes, cls: TopicClass) -> None:
        """A retained message the caller can produce again itself: sent if connected, not kept."""
        if self._connected.is_set():
            self._send(topic, payload, cls, True)

    def send_confirmed(self, topic: str, payload: bytes, cls: TopicClass, timeout: float) -> bool:
        """A retained QoS 1 message, not kept; True once the broker acknowledged this very message.

        ``flush`` waits for the newest publish of any thread, which may be an older one than ours.
        """
        if not self._connected.is_set():
            return False
        self._window.wait_for_room(self._connected.is_set)
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        self._window.sent()
        self._counters[cls].inc()
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def forget(self, topics: Iterable[str], cls: TopicClass) -> None:
        """Stop re-sending these retained messages on reconnect (their data went stale)."""
        self._outbox.forget(topics, cls)

    def publish_many(self, messages: Iterable[tuple[str, bytes]], cls: TopicClass,
                     ends: Mapping[str, float] | None = None) -> None:
        """Retained publish of a batch, taking the outbox lock once.

        ``ends``: when each topic's data goes stale (epoch seconds), as ``ends_at`` of ``publish``;
        a topic not in it never expires, one that is stale already is not sent.
        """
        batch = _live(messages, ends, time.time())
        connected = self._connected.is_set()
        self._outbox.keep_many([(t, p) for t, p, _ in batch], cls, ends, self._connections if connected else 0)
        if connected:
            # One client for the whole batch: if the connection drops meanwhile, the rest goes to
            # the dead client, and the outbox re-sends it on the next connect.
            client = self._client
            send = self._send
            for topic, payload, expiry in batch:
                send(topic, payload, cls, True, expiry, count=False, client=client)
            self._counters[cls].inc(len(batch))

    def republish(self, classes: Iterable[TopicClass] = tuple(TopicClass), *, unsent_only: bool = False) -> int:
        """Send kept retained messages of ``classes`` again, in class order. Returns the count.

        ``unsent_only`` skips what already went out on this connection: on the first connect the
        broker can only be missing what was kept while we were not connected.
        """
        if not self._connected.is_set():
            return 0
        clears, due = self._outbox.due(classes, self._connections, unsent_only=unsent_only)
        for topic in clears:
            self._send(topic, b"", TopicClass.DISCOVERY, True)
        sent = 0
        now = time.time()
        for cls, items in due:
            for topic, payload, ends_at in items:
                # What is left of the value's life: a re-send restores the broker's copy, it does
                # not make the data newer. A value that went stale meanwhile stays away.
                expiry = remaining(ends_at, now) if ends_at is not None else None
                if ends_at is not None and expiry is None:
                    continue
                self._send(topic, payload, cls, True, expiry)
                sent += 1
        return sent

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the broker acknowledged everything sent so far (QoS 1 acks arrive in order)."""
        info = self._last_info
        if info is None:
            return True
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, wait for in-flight messages, disconnect and end the thread."""
        self._stopping.set()
        self._guard.close()
        if self._connected.is_set() and self._will_topic is not None:
            info = self._client.publish(self._will_topic, OFFLINE, qos=1, retain=True)
            self._counters[TopicClass.AVAILABILITY].inc()
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not confirm the offline status before shutdown")
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout)
        self._connected.clear()
        self._metrics.connected.set(0)

    # ------------------------------------------------------------------ sending

    def _send(self, topic: str, payload: bytes, cls: TopicClass, retain: bool, expiry: int | None = None,
              count: bool = True, client: paho.Client | None = None) -> None:
        # Topics were checked when the catalogue was built (gateway.topics); paho checks wildcards too.
        self._window.wait_for_room(self._connected.is_set)
        try:
            info = (client or self._client).publish(topic, payload, qos=self._qos, retain=retain,
                                                    properties=self._properties(expiry))
        except (ValueError, TypeError) as exc:
            # One bad message (an invalid topic from a tampered data directory) must not abort a
            # batch or the republish after a reconnect.
            log.warning("not publishing to %r: %s", topic[:200], exc)
            return
        if self._qos and info.rc == paho.MQTT_ERR_SUCCESS:
            self._window.sent()
        self._last_info = info
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.debug("publish to %s failed: %s", topic, paho.error_string(info.rc))
        elif count:
            self._counters[cls].inc()

    def _properties(self, expiry: int | None) -> Properties | None:
        if not expiry or self._protocol != MQTT5:
            return None
        props = self._expiry_props.get(expiry)
        if props is None:
            if len(self._expiry_props) >= EXPIRY_PROPERTIES_KEPT:
                self._expiry_props.clear()
            props = self._expiry_props[expiry] = _PackedOnce(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry
        return props

    # ------------------------------------------------------------------ hooks (network thread)

    def _session_started(self, client: paho.Client, connack: object) -> None:
        self._window.on_network_thread()
        # MQTT 5: the broker says how many QoS 1 publishes it takes unacknowledged (65535 if silent).
        self._receive_max = int(getattr(connack, "ReceiveMaximum", 65_535))
        if self._will_topic is None:
            return
        if client.max_inflight_messages > self._receive_max:  # more would break the MQTT 5 session
            _set_window(client, self._receive_max)
        info = client.publish(self._will_topic, ONLINE, qos=1, retain=True)
        self._counters[TopicClass.AVAILABILITY].inc()
        if self._broker.inflight == "auto" and self._address not in self._windows:
            # A node seen for the first time: the acknowledgement of ``online`` shows how long it
            # takes to store a retained message, and so which in-flight window suits it.
            self._probe = (info.mid, time.perf_counter(), client)

    def _say_online(self) -> None:
        topic, client = self._will_topic, self._client

        def publish() -> None:
            if client.publish(topic, ONLINE, qos=1, retain=True).rc == paho.MQTT_ERR_SUCCESS:
                self._window.sent()  # its PUBACK is counted off the ack window, as every QoS 1 publish's
        if topic is None or not self._guard.send(publish):
            return
        self._counters[TopicClass.AVAILABILITY].inc()
        self._metrics.status_answers.inc()
        log.log(_level(n := self._guard.answers, logging.WARNING), "%s said offline while this instance is connected "
                "(a Last Will of another connection, or a client publishing there); said online again (%d)", topic, n)

    def _session_ended(self) -> None:
        self._probe = None
        self._window.reset()  # the outbox re-sends what mattered

    def _acked(self, mid: int) -> None:
        self._window.acked()
        probe = self._probe
        if probe is None or probe[0] != mid:
            return
        self._probe = None
        latency = time.perf_counter() - probe[1]
        window = self._windows[self._address] = window_for(latency)
        if window == NEAR_WINDOW:
            return
        log.info("MQTT broker %s:%s acknowledges in %.0f ms: in-flight window %d", *self._address,
                 latency * 1000, window)
        _set_window(probe[2], min(window, self._receive_max))

    def _inflight(self) -> int:
        return self._windows.get(self._address, NEAR_WINDOW) if self._broker.inflight == "auto" \
            else int(self._broker.inflight)


def _live(messages: Iterable[tuple[str, bytes]], ends: Mapping[str, float] | None,
          now: float) -> list[tuple[str, bytes, int | None]]:
    """Each message with its MQTT 5 message expiry at ``now``; those whose data is stale already left out."""
    out: list[tuple[str, bytes, int | None]] = []
    for topic, payload in messages:
        end = ends.get(topic) if ends else None
        if end is None:
            out.append((topic, payload, None))
        elif (expiry := remaining(end, now)) is not None:
            out.append((topic, payload, expiry))
    return out


def _set_window(client: paho.Client, window: int) -> None:
    """Change how many QoS 1 publishes may be in flight on an open connection.

    paho's setter refuses an open connection only because a change between 0 (no limit) and a
    limit is untested; between two limits its own code is enough: the next acknowledgement (this
    runs inside one, holding the same lock) fills the larger table. Reconnecting instead would
    drop the Last Will for a moment: a crash then left ``online`` standing.
    """
    with client._out_message_mutex:  # paho's own lock and attribute: paho is pinned below 3
        if client._max_inflight_messages > 0:
            client._max_inflight_messages = window


def _try_open(client: paho.Client, address: tuple[str, int], protocol: str, keepalive: int,
              max_packet: int | None, level: int) -> str | None:
    """Connect and send CONNECT; if the broker cannot be reached, why (logged at ``level``)."""
    try:
        _open(client, *address, protocol, keepalive, max_packet)
    except (OSError, ValueError) as exc:  # ssl.SSLError and unreadable TLS files are OSErrors
        log.log(level, "cannot reach MQTT broker %s:%s (%s); retrying with backoff", *address, _reason(exc))
        return _reason(exc)
    return None


def _level(count: int, level: int) -> int:
    """Log the 1st, 10th and every 100th repetition at ``level``, the rest at debug."""
    return level if count in (1, 10) or count % 100 == 0 else logging.DEBUG


def _open(client: paho.Client, host: str, port: int, protocol: str, keepalive: int, max_packet: int | None) -> None:
    """CONNECT in the given version: clean_start and properties exist in MQTT 5 only."""
    if protocol == MQTT5:
        client.connect(host, port, keepalive=keepalive, clean_start=True, properties=_connect_properties(max_packet))
    else:
        client.connect(host, port, keepalive=keepalive)


def _connect_properties(max_packet: int | None) -> Properties | None:
    if max_packet is None:
        return None
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = max_packet
    return props


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    return str(exc) or type(exc).__name__


def configure_security(client: paho.Client, b: Broker) -> None:
    """Credentials and TLS for a paho client."""
    if b.username is not None:
        client.username_pw_set(b.username, b.password.get_secret_value() if b.password else None)
    if b.use_tls:
        context = ssl.create_default_context(cafile=str(b.tls_ca) if b.tls_ca else None)
        if b.tls_cert is not None:
            context.load_cert_chain(str(b.tls_cert), str(b.tls_key) if b.tls_key else None)
        if b.tls_insecure:
            # Only on explicit request (GATEWAY_MQTT_TLS_INSECURE): skips name and chain checks.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client.tls_set_context(context)
