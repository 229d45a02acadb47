"""Civil-protection warnings (MoWaS, KATWARN, BIWAPP, DWD, LHP, police) from the NINA dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from gateway import adapter_api as api

# Lowest first; "unknown" (NINA sends it, e.g. for flood messages) still means "there is a warning".
SEVERITIES = ("none", "unknown", "minor", "moderate", "severe", "extreme")
# Our warning attribute -> path in a dashboard item [C: bundesAPI/nina-api openapi.yaml].
ITEM: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "provider": ("payload", "data", "provider"),
    "severity": ("payload", "data", "severity"),
    "msg_type": ("payload", "data", "msgType"),
    "headline": ("i18nTitle", "de"),
    "sent": ("sent",),
    "event": ("payload", "data", "transKeys", "event"),
}
FIELDS = frozenset({"count", "highest_severity", "latest_headline"})
MAX_LISTED = 20  # active warnings listed; upcoming and cancelled ones: 5 each
KREIS_DIGITS = 5  # Land (2) + Regierungsbezirk (1) + Kreis (2); the dashboard only knows Kreise


def _kreis(ars: str) -> str:
    """The dashboard works at Kreis level only: 059740040040 (Stadt Soest) -> 059740000000."""
    return ars[:KREIS_DIGITS] + "0" * (12 - KREIS_DIGITS)


class Options(api.AdapterOptions):
    ars: Annotated[str, Field(pattern=r"^\d{12}$"), AfterValidator(_kreis)] = "059740000000"
    area_name: str = Field(default="Kreis Soest", max_length=80)  # only for the station attribute
    providers: tuple[str, ...] | None = None  # e.g. ("MOWAS", "DWD"); None = all


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, f"/dashboard/{opts.ars}.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    latest: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(api.load_json_array(body, "dashboard items")):
        if not isinstance(item, dict):
            continue
        if not isinstance(api.dig(item, "payload", "data"), dict):
            raise api.ParseError("a dashboard item has no payload.data", kind="bad_schema")
        warning = _warning(item)
        key = warning["id"] or f"#{index}"
        # An Update (or a Cancel) supersedes the earlier message with the same id.
        if key not in latest or _order(warning) >= _order(latest[key]):
            latest[key] = warning
    wanted = {p.upper() for p in opts.providers} if opts.providers is not None else None
    groups: dict[str, list[dict[str, Any]]] = {"active": [], "upcoming": [], "cancelled": [], "expired": []}
    for w in sorted(latest.values(), key=_sent, reverse=True):  # newest first
        if wanted is None or (w["provider"] or "").upper() in wanted:
            # Expiry is not in the spec, but real DWD/LHP items carry onset/expires [C: third-party sample].
            withdrawn = (w["msg_type"] or "").lower() == "cancel" or w["valid"] is False
            groups["cancelled" if withdrawn else api.phase(w["onset"], w["expires"], now)].append(w)
    active = groups["active"]
    highest = max((w["severity"] for w in active), key=SEVERITIES.index, default="none")
    return api.readings({
        "count": (len(active), {"warnings": api.listed(active, ITEM, MAX_LISTED), "upcoming": api.listed(
            groups["upcoming"], ITEM, 5), "cancelled": api.listed(groups["cancelled"], ITEM, 5)}),
        "highest_severity": (highest, {}),
        "latest_headline": (active[0]["headline"] if active else None,
                            {"id": active[0]["id"], "provider": active[0]["provider"]} if active else {}),
    }, now, api.Station(name=opts.area_name, id=opts.ars))


def _warning(item: dict[str, Any]) -> dict[str, Any]:
    raw = {key: api.dig(item, *path) for key, path in ITEM.items()}
    severity = raw["severity"].lower() if isinstance(raw["severity"], str) else None
    headline = raw["headline"] if isinstance(raw["headline"], str) else api.dig(item, "payload", "data", "headline")
    return {
        **{key: api.clip(v, 80) if isinstance(v, str) else None for key, v in raw.items()},
        "id": api.clip(raw["id"], 120) if isinstance(raw["id"], str) else None,
        "headline": api.clip(headline, 255) if isinstance(headline, str) else None,
        "severity": severity if severity in SEVERITIES[2:] else "unknown",
        "sent": api.local_datetime(raw["sent"], UTC),
        "onset": api.local_datetime(item.get("onset"), UTC),
        "expires": api.local_datetime(item.get("expires"), UTC),
        "version": api.integer(api.dig(item, "payload", "version")) or 0,
        "valid": api.dig(item, "payload", "data", "valid"),  # [I] seen as true in real items; false = withdrawn
    }


def _sent(warning: dict[str, Any]) -> float:
    return warning["sent"].timestamp() if warning["sent"] is not None else float("-inf")


def _order(warning: dict[str, Any]) -> tuple[int, float]:
    """Which of two messages with one id is newer: payload.version, then `sent`."""
    return warning["version"], _sent(warning)


ADAPTER = api.Adapter(
    name="nina", title="Civil-protection warnings",
    provider="Bundesamt für Bevölkerungsschutz und Katastrophenhilfe (BBK)",
    dataset="NINA warning dashboard per Kreis (MoWaS, KATWARN, BIWAPP, DWD, LHP, police)",
    license="Warnings may only be used unchanged in content and not for commercial purposes "
            "(\"darf nur inhaltlich unverändert und nicht zu gewerblichen Zwecken verwendet werden\", MoWaS)",
    attribution="Bundesamt für Bevölkerungsschutz und Katastrophenhilfe (BBK), NINA", info_url="https://nina.api.bund.dev/",
    fields=FIELDS, options=Options, request=request, parse=parse,
    # reevaluate stays False: the dashboard item has no expiry of its own (rarely onset/expires,
    # honoured at each fetch); a poll every few minutes is what decides when a message is gone.
)
