"""The subscription lifecycle (gateway/notify.py) against a local NGSI-LD/v2 broker, with a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import loads
from gateway.http import HttpServer
from gateway.metrics import Metrics
from gateway.notify import Notifier
from tests.helpers import ROOT, wait_until
from tests.ngsi_broker import NgsiBroker

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Host:
    catalog: Any
    sources: dict[str, Any] = field(default_factory=dict)
    store: Any = None
    publisher: Any = None
    metrics: Metrics = field(default_factory=Metrics)


def host_for(base_url: str, **options: Any) -> Host:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    source = data["sources"]["city_platform"]
    source.update(enabled=True, base_url=base_url)
    source["options"].update({"subscribe": True, "notify_url": "http://gw.example:8080/", **options})
    data["sources"] = {"city_platform": source, "brightsky": data["sources"]["brightsky"]}
    return Host(catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"), ADAPTERS))


@pytest.fixture
def ngsi() -> Any:
    server = NgsiBroker()
    yield server
    server.close()


def methods(ngsi: NgsiBroker) -> list[str]:
    return [m for m, p, _, _ in ngsi.requests if "subscriptions" in p]


def test_only_subscribing_sources_and_not_without_an_http_server(ngsi: NgsiBroker, caplog: pytest.LogCaptureFixture):
    notifier = Notifier(host_for(ngsi.url), lambda: None, listening=False)
    assert set(notifier.subs) == {"city_platform"}
    assert notifier.subs["city_platform"].endpoint == "http://gw.example:8080/notify/city_platform"
    assert "polling only" in caplog.text
    plain = host_for(ngsi.url, subscribe=False)
    assert Notifier(plain, lambda: None, listening=True, start=False).subs == {}


def test_create_renew_recreate_delete(ngsi: NgsiBroker):
    clock = Clock()
    notifier = Notifier(host_for(ngsi.url, subscription_lifetime=600, q='stationCode=="SO-01"', key_values=True),
                        lambda: None, listening=True, clock=clock, start=False)
    notifier.check()
    (ident, created), = ngsi.subscriptions.items()
    assert created == {
        "id": ident, "type": "Subscription", "entities": [{"type": "WeatherObserved"}], "q": 'stationCode=="SO-01"',
        "expiresAt": "2026-11-30T07:10:00Z",
        "notification": {"format": "keyValues", "endpoint": {"uri": "http://gw.example:8080/notify/city_platform",
                                                             "accept": "application/json"}}}
    assert notifier.subs["city_platform"].id == ident
    clock.now += timedelta(seconds=200)  # 400 s left: no renewal yet, only the status check
    notifier.check()
    assert methods(ngsi) == ["POST", "GET"]
    clock.now += timedelta(seconds=150)  # 250 s left of 600: renewed
    notifier.check()
    assert methods(ngsi)[-2:] == ["GET", "PATCH"]
    assert ngsi.subscriptions[ident]["expiresAt"] == "2026-11-30T07:15:50Z"
    with ngsi.lock:
        ngsi.subscriptions.clear()  # the platform restarted without its subscriptions
    notifier.check()
    assert methods(ngsi)[-2:] == ["GET", "POST"]
    assert list(ngsi.subscriptions) == [ident]
    notifier.close()
    assert ngsi.subscriptions == {}
    assert methods(ngsi)[-1] == "DELETE"
    assert notifier.subs["city_platform"].id is None


def test_v2_takes_the_id_from_the_location_header(ngsi: NgsiBroker):
    notifier = Notifier(host_for(ngsi.url, version="v2", entity_id="Soest-1", service_path="/umwelt"), lambda: None,
                        listening=True, clock=Clock(), start=False)
    notifier.check()
    assert [p for m, p, _, _ in ngsi.requests] == ["/v2/subscriptions"]
    body = ngsi.requests[0][3]
    assert b'"subject": {"entities": [{"type": "WeatherObserved", "id": "Soest-1"}]}' in body
    assert b'"http": {"url": "http://gw.example:8080/notify/city_platform"}' in body
    assert ngsi.requests[0][2]["Fiware-ServicePath"] == "/umwelt"
    (ident,) = ngsi.subscriptions  # chosen by the broker, not by us
    assert len(ident) == 24
    assert notifier.subs["city_platform"].id == ident
    notifier.close()
    assert ngsi.subscriptions == {}
    assert ngsi.requests[-1][:2] == ("DELETE", f"/v2/subscriptions/{ident}")


def test_an_unreachable_platform_means_polling_only_and_a_later_retry(ngsi: NgsiBroker):
    notifier = Notifier(host_for("http://127.0.0.1:9"), lambda: None, listening=True, clock=Clock(), start=False)
    notifier.check()  # connection refused: logged, no crash
    assert notifier.subs["city_platform"].id is None


def test_the_route_takes_only_our_subscription_and_only_while_serving(ngsi: NgsiBroker):
    loop = asyncio.new_event_loop()
    serving: list[asyncio.AbstractEventLoop | None] = [None]
    host = host_for(ngsi.url)
    notifier = Notifier(host, lambda: serving[0], listening=True, clock=Clock(), start=False)
    notifier.check()
    (ident,) = ngsi.subscriptions
    http = HttpServer("127.0.0.1", 0, CollectorRegistry(), posts=notifier.routes, max_post=4096)
    http.start()
    url = f"http://127.0.0.1:{http.port}/notify/city_platform"
    doc = {"id": "urn:ngsi-ld:Notification:1", "type": "Notification", "subscriptionId": ident,
           "notifiedAt": "2026-11-30T07:10:00Z", "data": [{"id": "urn:x", "type": "WeatherObserved"}]}
    try:
        assert requests.post(url, json=doc, timeout=5).status_code == 503  # a standby does not publish
        serving[0] = loop
        assert requests.post(url, json={**doc, "subscriptionId": "urn:other"}, timeout=5).status_code == 403
        assert requests.post(url, data=b"x" * 5000, timeout=5).status_code == 413
        assert requests.post(url, data=b"[]", timeout=5).status_code == 400
        assert requests.post(url + "x", json=doc, timeout=5).status_code == 404
        assert requests.get(url, timeout=5).status_code == 404  # POST only
        answer = requests.post(url, json=doc, timeout=5)
        assert (answer.status_code, answer.json()) == (200, {"accepted": 1})
        assert notifier.subs["city_platform"].notifications == 1
        counted = host.metrics.notifications
        assert {o: counted.labels(source="city_platform", outcome=o)._value.get()
                for o in ("accepted", "foreign", "malformed", "standby")} == {
            "accepted": 1, "foreign": 1, "malformed": 1, "standby": 1}
    finally:
        http.stop()
        loop.close()
        notifier.close()


def test_the_thread_subscribes_only_while_the_gateway_serves(ngsi: NgsiBroker):
    serving: list[asyncio.AbstractEventLoop | None] = [None]
    loop = asyncio.new_event_loop()
    notifier = Notifier(host_for(ngsi.url, subscription_lifetime=4), lambda: serving[0], listening=True)
    try:
        time.sleep(1.5)
        assert ngsi.subscriptions == {}  # a standby holds no subscription
        serving[0] = loop
        wait_until(lambda: ngsi.subscriptions, timeout=5)
        serving[0] = None  # stepped down: the active gateway subscribes now
        wait_until(lambda: not ngsi.subscriptions, timeout=5)
    finally:
        notifier.close()
        loop.close()
