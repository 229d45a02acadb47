"""A small NGSI-LD / NGSI-v2 context broker for tests: paged entity queries and subscriptions, as the APIs define them.

What it speaks, from ETSI GS CIM 009 (NGSI-LD) and the Orion NGSI-v2 manual:
- ``GET /ngsi-ld/v1/entities?type=&limit=&offset=&count=true``: a JSON array, ``NGSILD-Results-Count``;
- ``GET /v2/entities?type=&limit=&offset=&options=count``: a JSON array, ``Fiware-Total-Count``;
- ``POST /ngsi-ld/v1/subscriptions``: 201 with ``Location: /ngsi-ld/v1/subscriptions/<id>`` (the id the
  client chose, or one of ours); ``POST /v2/subscriptions`` likewise, always with an id of ours;
  ``GET``/``PATCH``/``DELETE`` of that path (404 ProblemDetails once gone); ``notify`` POSTs a
  Notification (``type``, ``subscriptionId``, ``notifiedAt``, ``data``) to the subscription's endpoint.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

SUBSCRIPTIONS = "/ngsi-ld/v1/subscriptions"
V2_SUBSCRIPTIONS = "/v2/subscriptions"  # Orion chooses the id: 24 hex digits, in the Location header
NOT_FOUND = {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "title": "Subscription not found"}


class NgsiBroker:
    """Entities to serve (``entities``), the requests it saw, and the subscriptions it holds."""

    def __init__(self, entities: list[dict[str, Any]] | None = None) -> None:
        self.entities: list[dict[str, Any]] = list(entities or [])
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path+query, headers, body
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        broker = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with broker.lock:
                    broker.requests.append((self.command, self.path, dict(self.headers), body))
                return body

            def do_GET(self) -> None:
                self._record()
                url = urlsplit(self.path)
                if url.path in ("/ngsi-ld/v1/entities", "/v2/entities"):
                    self._reply(200, *broker.page(url.path, parse_qs(url.query)))
                elif url.path.startswith((SUBSCRIPTIONS + "/", V2_SUBSCRIPTIONS + "/")):
                    sub = broker.subscriptions.get(url.path.rsplit("/", 1)[1])
                    self._reply(200, sub) if sub is not None else self._reply(404, NOT_FOUND)
                else:
                    self._reply(404, {"error": "NotFound"})

            def do_POST(self) -> None:
                body = json.loads(self._record() or b"{}")
                path = urlsplit(self.path).path
                if path not in (SUBSCRIPTIONS, V2_SUBSCRIPTIONS):
                    self._reply(404, {"error": "NotFound"})
                    return
                ident = uuid.uuid4().hex[:24] if path == V2_SUBSCRIPTIONS else (
                    body.get("id") or f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
                with broker.lock:
                    broker.subscriptions[ident] = {**body, "id": ident}
                self._reply(201, headers={"Location": f"{path}/{ident}"})

            def do_PATCH(self) -> None:
                body = json.loads(self._record() or b"{}")
                ident = urlsplit(self.path).path.rsplit("/", 1)[1]
                with broker.lock:
                    found = ident in broker.subscriptions
                    if found:
                        broker.subscriptions[ident].update(body)
                self._reply(204) if found else self._reply(404, NOT_FOUND)

            def do_DELETE(self) -> None:
                self._record()
                with broker.lock:
                    found = broker.subscriptions.pop(urlsplit(self.path).path.rsplit("/", 1)[1], None)
                self._reply(204) if found is not None else self._reply(404, NOT_FOUND)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, path: str, query: dict[str, list[str]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        wanted = query.get("type", [None])[0]
        with self.lock:
            found = [e for e in self.entities if wanted is None or e.get("type") == wanted]
        offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["20"])[0])
        headers = {}
        if path.startswith("/ngsi-ld") and query.get("count") == ["true"]:
            headers["NGSILD-Results-Count"] = str(len(found))
        if path.startswith("/v2") and "count" in query.get("options", [""])[0].split(","):
            headers["Fiware-Total-Count"] = str(len(found))
        return found[offset:offset + limit], headers

    def entity_requests(self) -> list[tuple[str, dict[str, str]]]:
        with self.lock:
            return [(p, h) for m, p, h, _ in self.requests if m == "GET" and "/entities" in p]

    def notify(self, ident: str, data: list[dict[str, Any]], subscription_id: str | None = None,
               timeout: float = 5.0) -> requests.Response:
        """POST a Notification for subscription ``ident`` to its endpoint, as the broker would."""
        sub = self.subscriptions[ident]
        doc = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
               "subscriptionId": subscription_id or ident,
               "notifiedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "data": data}
        endpoint = sub["notification"]["endpoint"]
        return requests.post(endpoint["uri"], json=doc, timeout=timeout,
                             headers={"Content-Type": endpoint.get("accept", "application/json")})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
