"""Civil-protection warnings (MoWaS, KATWARN, BIWAPP, DWD, LHP, police) from the NINA dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from gateway import adapter_api as api

# Lowest first; "unknown" (NINA sends it, e.g. for flood messages) still means "there is a warning".
SEVERITIES = ("none", "unknown", "minor", "moderate", "severe", "extreme")
KNOWN_SEVERITY = api.one_of(SEVERITIES[2:])
# Our warning attribute -> dotted path in a dashboard item (the OpenAPI spec of github.com/bundesAPI/nina-api), in
# the order the attributes list them.
ITEM: dict[str, str] = {"id": "id", "provider": "payload.data.provider", "severity": "payload.data.severity",
                        "msg_type": "payload.data.msgType", "headline": "i18nTitle.de", "sent": "sent",
                        "event": "payload.data.transKeys.event"}
# Times: sent/onset/expires are ISO 8601 with an offset ("+02:00"); one without is read as UTC [I].
FIELDS = frozenset({"count", "highest_severity", "latest_headline"})
# Listed in the attributes of `count`: how many warnings of each state, newest first.
LISTED = {"warnings": ("active", 20), "upcoming": ("upcoming", 5), "cancelled": ("cancelled", 5)}
NEVER = datetime.min.replace(tzinfo=UTC)  # the `sent` of a message without one: older than any other
KREIS_DIGITS = 5  # Land (2) + Regierungsbezirk (1) + Kreis (2); the dashboard only knows Kreise


def _kreis(ars: str) -> str:
    """The dashboard works at Kreis level only: 059740040040 (Stadt Soest) -> 059740000000."""
    return ars[:KREIS_DIGITS] + "0" * (12 - KREIS_DIGITS)


class Options(api.AdapterOptions):
    ars: Annotated[str, Field(pattern=r"^\d{12}$"), AfterValidator(_kreis)] = "059740000000"
    area_name: str = Field(default="Kreis Soest", max_length=80)  # only for the station attribute
    # e.g. ("MOWAS", "DWD"), in any case; None = all
    providers: tuple[Annotated[str, AfterValidator(str.upper)], ...] | None = None


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, f"/dashboard/{opts.ars}.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    items = [_warning(item, now) for item in api.load_json_array(body, "dashboard items") if isinstance(item, dict)]
    # An Update (or a Cancel) supersedes the earlier message with the same id.
    latest = api.latest_per_id(items, lambda w: w["id"], lambda w: (w["version"], w["sent"] or NEVER))
    shown = [w for w in latest if opts.providers is None or (w["provider"] or "").upper() in opts.providers]
    newest_first = sorted(shown, key=lambda w: w["sent"] or NEVER, reverse=True)
    active = [w for w in newest_first if w["state"] == "active"]
    highest = max((w["severity"] for w in active), key=SEVERITIES.index, default="none")
    top = active[0] if active else {}
    return api.readings({
        "count": (len(active), {key: api.listed([w for w in newest_first if w["state"] == state], ITEM, limit)
                                for key, (state, limit) in LISTED.items()}),
        "highest_severity": (highest, {}),
        "latest_headline": (top.get("headline"), {key: top[key] for key in ("id", "provider") if key in top}),
    }, now, api.Station(name=opts.area_name, id=opts.ars))


def _warning(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A dashboard item's attributes, its version and its state at ``now`` (active, upcoming, cancelled, expired)."""
    data = api.member(api.as_dict(item.get("payload")), "data", dict, "a dashboard item's payload", errors=())
    raw = {key: api.dig(item, *path.split(".")) for key, path in ITEM.items()}
    warning = {
        **{key: api.clip(v, 80) if isinstance(v, str) else None for key, v in raw.items()},
        "id": api.clip(raw["id"], 120) if isinstance(raw["id"], str) else None,
        "headline": api.text(raw["headline"], 255) or api.text(data.get("headline"), 255),
        "severity": KNOWN_SEVERITY(str(raw["severity"]).lower()) or "unknown",
        "sent": api.local_datetime(raw["sent"], UTC),
        "version": api.integer(api.dig(item, "payload", "version")) or 0,
    }
    # payload.data.valid: [I] seen as true in real items; false = withdrawn. An all-clear does not always come as a
    # Cancel: the BBK also sends it as an Update titled "Entwarnung: ..." [C: a public NINA client's tests].
    withdrawn = (warning["msg_type"] or "").lower() == "cancel" or data.get("valid") is False \
        or (warning["headline"] or "").casefold().startswith("entwarnung")
    # Expiry is not in the spec, but real DWD/LHP items carry onset/expires [C: third-party sample].
    onset, expires = (api.local_datetime(item.get(key), UTC) for key in ("onset", "expires"))
    return {**warning, "state": "cancelled" if withdrawn else api.phase(onset, expires, now)}


ADAPTER = api.Adapter(
    name="nina", title="Civil-protection warnings", fields=FIELDS, options=Options, request=request, parse=parse,
    provider="Bundesamt für Bevölkerungsschutz und Katastrophenhilfe (BBK)",
    dataset="NINA warning dashboard per Kreis (MoWaS, KATWARN, BIWAPP, DWD, LHP, police)",
    license="Warnings may only be used unchanged in content and not for commercial purposes "
            "(\"darf nur inhaltlich unverändert und nicht zu gewerblichen Zwecken verwendet werden\", MoWaS)",
    # reevaluate stays False: the dashboard item has no expiry of its own (rarely onset/expires,
    # honoured at each fetch); a poll every few minutes is what decides when a message is gone.
    attribution="Bundesamt für Bevölkerungsschutz und Katastrophenhilfe (BBK), NINA", info_url="https://nina.api.bund.dev/")
