"""NGSI-LD subscriptions end to end: local broker → /notify/<source> → gateway → Mosquitto → subscriber.

The context broker is tests/ngsi_broker.py (paged queries and subscriptions as ETSI GS CIM 009 has them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import GatewayProcess, Mosquitto, Subscriber, free_port, wait_until, write_config
from tests.ngsi_broker import NgsiBroker

pytestmark = pytest.mark.broker

SOEST = "urn:ngsi-ld:WeatherObserved:Soest-Wetterstation-Rathaus"


def station(temperature: float, observed: str = "2026-11-30T07:00:00Z") -> dict[str, Any]:
    return {"id": SOEST, "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": temperature, "unitCode": "CEL", "observedAt": observed},
            "relativeHumidity": {"type": "Property", "value": 0.5, "observedAt": observed},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.1061, 51.5711]}}}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@pytest.fixture
def ngsi() -> Any:
    server = NgsiBroker([station(3.3, now_iso())])
    yield server
    server.close()


def config(tmp_path: Path, ngsi: NgsiBroker, http_port: int) -> Path:
    def edit(data: dict[str, Any]) -> None:
        source = data["sources"]["city_platform"]
        source.update(enabled=True, base_url=ngsi.url, every="1h", max_age="3650d")
        source["options"].update(subscribe=True, notify_url=f"http://127.0.0.1:{http_port}", subscription_lifetime=4,
                                 tenant="soest")
        data["sources"] = {"city_platform": source}

    return write_config(tmp_path / "notify.yaml", ngsi.url, edit=edit)


def test_a_notified_change_is_published_and_the_subscription_lives_and_ends_with_the_gateway(
        tmp_path: Path, broker: Mosquitto, ngsi: NgsiBroker):
    http_port = free_port()
    proc = GatewayProcess(config(tmp_path, ngsi, http_port), broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    sub = Subscriber(broker.port, "soest/city_platform/#", live=True)
    try:
        first = sub.wait_for("soest/city_platform/temperature", "3.3", timeout=20)
        assert (first.retain, first.qos) == (True, 1)
        ident = wait_until(lambda: next(iter(ngsi.subscriptions), None), timeout=15)
        created = ngsi.subscriptions[ident]
        assert created["type"] == "Subscription"
        assert created["entities"] == [{"type": "WeatherObserved"}]
        assert created["notification"]["endpoint"]["uri"] == f"http://127.0.0.1:{http_port}/notify/city_platform"
        assert created["notification"]["format"] == "normalized"
        posted = [h for m, p, h, _ in ngsi.requests if m == "POST"]
        assert posted[0]["NGSILD-Tenant"] == "soest"

        # A change arrives: published at once (the next poll is an hour away).
        mark = sub.mark()
        assert ngsi.notify(ident, [station(4.1, now_iso())]).status_code == 200
        msg = sub.wait_for("soest/city_platform/temperature", "4.1", timeout=5, after=mark)
        assert (msg.retain, msg.qos) == (True, 1)
        # Attributes the notification left out keep the polled values.
        assert sub.wait_for("soest/city_platform/humidity", timeout=1).payload == b"50"

        # Notifications of other subscriptions, oversized and malformed ones are refused.
        assert ngsi.notify(ident, [station(99.0, now_iso())], subscription_id="urn:ngsi-ld:Subscription:other"
                           ).status_code == 403
        url = f"http://127.0.0.1:{http_port}/notify/city_platform"
        assert requests.post(url, data=b"{" * (2 * 1024 * 1024), timeout=5).status_code == 413
        assert requests.post(url, data=b'{"data": "x"}', timeout=5).status_code == 400
        assert requests.post(f"http://127.0.0.1:{http_port}/notify/brightsky", json={}, timeout=5).status_code == 404

        # Renewed before it expires (lifetime 4 s: renewed at 2 s).
        renewed = wait_until(lambda: any(m == "PATCH" for m, _, _, _ in ngsi.requests), timeout=10)
        assert renewed
        # The platform restarts and forgets it: created again.
        with ngsi.lock:
            ngsi.subscriptions.clear()
        again = wait_until(lambda: next(iter(ngsi.subscriptions), None), timeout=10)
        mark = sub.mark()
        assert ngsi.notify(again, [station(5.2, now_iso())]).status_code == 200
        sub.wait_for("soest/city_platform/temperature", "5.2", timeout=5, after=mark)
        assert not [m for m in sub.snapshot() if m.payload == b"99"]
    finally:
        code = proc.terminate()
        sub.close()
    assert code == 0
    assert ngsi.subscriptions == {}  # deleted on clean shutdown
    assert any(m == "DELETE" for m, _, _, _ in ngsi.requests)
