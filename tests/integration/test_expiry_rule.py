"""Issue #17, point 4: the documented expiry rule is what a real MQTT 5 subscriber receives.

README and docs/topics.md state the rule in the same words; the example table in docs/topics.md
("How long a value stays") gives values of several ages. Each row is published through the
gateway's own Publisher and link to a real Mosquitto, and the Message Expiry Interval that a
subscriber receives must be the row's. A row that says "not published" must not arrive at all.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import Broker, load, parse_duration
from gateway.expiry import Expiry
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.publisher import Publisher
from gateway.runs import Outcome
from gateway.store import Outgoing, Store
from tests.helpers import ROOT, Mosquitto, Subscriber, barrier

pytestmark = pytest.mark.broker

RULE = "**message expiry = `observed_at + max_age − now`, in seconds, rounded up, at least 1 s**"
NOT_PUBLISHED = "not published"


def documented_rows() -> list[tuple[float, float, int | None]]:
    """(max_age, age at publish, expiry or None) from the example table of docs/topics.md."""
    text = (ROOT / "docs" / "topics.md").read_text()
    section = text.split("## How long a value stays", 1)[1].split("\n## ", 1)[0]
    header = "| `max_age` | `observed_at` | published at | message expiry |"
    table = section.split(header, 1)[1].strip().split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[1:]:  # after the |---| line
        max_age, observed, published, expiry = (cell.strip() for cell in line.strip("|").split("|"))
        age = (clock(published) - clock(observed)).total_seconds()
        if expiry == NOT_PUBLISHED:
            rows.append((parse_duration(max_age), age, None))
        else:
            seconds = re.fullmatch(r"(\d+) s", expiry)
            assert seconds, f"docs/topics.md: cannot read the expiry {expiry!r}"
            rows.append((parse_duration(max_age), age, int(seconds.group(1))))
    return rows


def clock(text: str) -> datetime:
    return datetime.strptime(text, "%H:%M:%S.%f" if "." in text else "%H:%M:%S")


def by_the_rule(max_age: float, age: float) -> int | None:
    """The rule as the docs word it, computed here independently of the gateway."""
    left = max_age - age
    return None if left < 0 else max(1, math.ceil(left))


def test_readme_and_docs_state_the_same_rule():
    for doc in (ROOT / "README.md", ROOT / "docs" / "topics.md"):
        assert RULE in " ".join(doc.read_text().split()), f"{doc.name} does not state the rule"


def test_the_example_table_follows_the_rule():
    rows = documented_rows()
    assert len(rows) >= 4
    assert len({age for _, age, _ in rows}) >= 4, "the example needs values of different ages"
    assert None in {expiry for *_, expiry in rows}, "the example shows no stale value"
    for max_age, age, expiry in rows:
        assert by_the_rule(max_age, age) == expiry, (max_age, age)


class ExpirySubscriber(Subscriber):
    """Keeps each message's Message Expiry Interval and when it arrived."""

    def __init__(self, port: int, *filters: str) -> None:
        self.received: dict[str, tuple[int | None, float]] = {}
        self._seen = threading.Lock()
        super().__init__(port, *filters)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._seen:
            self.received[msg.topic] = (getattr(msg.properties, "MessageExpiryInterval", None), time.time())
        super()._on_message(client, userdata, msg)


def test_the_published_expiry_is_the_documented_one(tmp_path: Path):
    broker = Mosquitto(tmp_path).start()
    metrics = Metrics()
    link = MqttLink(Broker(port=broker.port, protocol="5"), client_id="t-rule", will_topic=None, metrics=metrics)
    link.start()
    sub = ExpirySubscriber(broker.port, "soest/#")
    try:
        assert link.wait_connected(5)
        cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
        source = cat.sources["brightsky"]
        store = Store(heartbeat=900)
        publisher = Publisher(link, metrics, Expiry(link, store, metrics, enabled=True))
        rows = documented_rows()
        sent: list[tuple[str, int | None, float]] = []
        for (max_age, age, expiry), entity in zip(rows, source.entities, strict=False):
            spec = dataclasses.replace(source, max_age=max_age)
            st = store.state(entity)
            published = time.time()
            st.text, st.observed_at = "1", datetime.fromtimestamp(published, UTC) - timedelta(seconds=age)
            values = Outgoing(states=[(entity.state_topic, b"1")], attributes=[(entity.attributes_topic, b"{}")])
            publisher.publish(spec, Outcome(spec.key, values=values))
            sent += [(entity.state_topic, expiry, published), (entity.attributes_topic, expiry, published)]
        assert link.flush(5)
        barrier(sub, broker.port)
        for topic, expiry, published in sent:
            got = sub.received.get(topic)
            if expiry is None:
                assert got is None, f"{topic}: a stale value was published"
                continue
            assert got is not None, f"{topic}: not published"
            interval, arrived = got
            # Mosquitto counts whole seconds: a message forwarded in a later second than it was
            # published in shows one second less.
            allowed = {expiry} if int(arrived) == int(published) else {expiry, expiry - 1 or None}
            assert interval in allowed, (topic, interval, expiry)
    finally:
        sub.close()
        link.stop()
        broker.stop()
