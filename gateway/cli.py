"""Command line: ``soest-gateway [run|check-config|topics|fetch|discovery|purge]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

# The one place the core meets the adapters: their registry is handed to catalog.build from here.
from adapters import ADAPTERS
from gateway import __version__, catalog, contract, discovery
from gateway.config import (
    BROKER_ENV,
    DEFAULT_CONFIG,
    Broker,
    Loaded,
    check_host,
    check_port,
    echo,
    load,
    load_broker,
    parse_flag,
)
from gateway.errors import ConfigError, GatewayError, SourceError

log = logging.getLogger("gateway")

EXIT_USAGE = 2
EXIT_FAILURE = 1
DEFAULT_HTTP_PORT = 9142
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
COMMANDS = ("run", "check-config", "topics", "fetch", "discovery", "purge")
_OFF = ("off", "none", "disabled", "")
# Upstream text reaches log messages; a newline or an ANSI escape in it must not forge a log line.
_ESCAPES = MappingProxyType({
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0)) if code != 0x09},
    0x0a: "\\n", 0x0d: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029",
})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line per record: control characters in the message are escaped; a traceback follows as is."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPES)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho and apscheduler are chatty at INFO; their news reaches the user through our own lines.
    for noisy in ("apscheduler", "tzlocal", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _broker_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker (each also read from the environment variable shown)")
    for field, var in BROKER_ENV.items():
        flag = "--mqtt-" + field.replace("_", "-")
        if field in ("tls", "tls_insecure"):
            group.add_argument(flag, dest=f"mqtt_{field}", action="store_const", const=True, default=None,
                               help=f"[{var}]")
        else:
            group.add_argument(flag, dest=f"mqtt_{field}", metavar=field.upper(), help=f"[{var}]")


def _global_options(parser: argparse.ArgumentParser, env: Mapping[str, str] | None) -> None:
    """--config and the log options; with ``env`` None their defaults are SUPPRESS (for subcommands)."""
    def default(name: str, fallback: str) -> str:
        return argparse.SUPPRESS if env is None else env.get(name, fallback)

    parser.add_argument("--config", "-c", default=default("GATEWAY_CONFIG", DEFAULT_CONFIG),
                        help=f"path to topics.yaml [GATEWAY_CONFIG] (default: {DEFAULT_CONFIG})")
    parser.add_argument("--log-level", default=default("GATEWAY_LOG_LEVEL", "info"),
                        choices=LOG_LEVELS, help="[GATEWAY_LOG_LEVEL] (default: info)")
    parser.add_argument("--log-format", default=default("GATEWAY_LOG_FORMAT", "text"),
                        choices=LOG_FORMATS, help="[GATEWAY_LOG_FORMAT] (default: text)")


def _standby_flag(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--standby", action="store_true", default=default,
                        help="take over only when the active instance's heartbeat stops; publish nothing "
                             "until then [GATEWAY_STANDBY] (see docs/deployment.md)")


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    # Global options are accepted before and after the command. The subcommands' copies default to
    # SUPPRESS: a real default there would overwrite a value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, None)
    parser = argparse.ArgumentParser(prog="soest-gateway",
                                     description="Open city data to MQTT with Home Assistant discovery.")
    _global_options(parser, os.environ if env is None else env)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _standby_flag(parser, None)  # a run option, but accepted before the command like the global ones
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the gateway (the default)")
    _broker_flags(run)
    _standby_flag(run, argparse.SUPPRESS)
    run.add_argument("--http-port", default=None,
                     help=f"metrics/health port, 'off' to disable [GATEWAY_HTTP_PORT] (default {DEFAULT_HTTP_PORT})")
    run.add_argument("--http-host", default=None,
                     help="status/metrics bind address [GATEWAY_HTTP_HOST] (default 127.0.0.1; 0.0.0.0 in Docker)")
    run.add_argument("--data-dir", default=None,
                     help="where last values and the discovery registry are kept, 'off' to disable "
                          "[GATEWAY_DATA_DIR] (default .data/gateway)")

    sub.add_parser("check-config", parents=[common], help="validate topics.yaml and the broker settings")
    sub.add_parser("topics", parents=[common], help="list every topic the config produces")
    fetch = sub.add_parser("fetch", parents=[common], help="fetch one source once and print its readings")
    fetch.add_argument("source", help="source key from topics.yaml")
    fetch.add_argument("--json", action="store_true", help="print JSON instead of a table")
    disc = sub.add_parser("discovery", parents=[common], help="show the Home Assistant discovery configs")
    disc.add_argument("--print", dest="print_", action="store_true", help="print topic and payload (default)")
    purge = sub.add_parser("purge", parents=[common],
                           help="remove every retained state and discovery topic of ours from the broker")
    _broker_flags(purge)
    return parser


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Parsed arguments; without a command it is ``run`` (``docker run IMAGE --config F`` has none)."""
    parser = build_parser(env)
    args = list(sys.argv[1:] if argv is None else argv)
    asks_top_level = any(a in ("-h", "--help", "--version") for a in args)
    if not asks_top_level and not any(a in COMMANDS for a in args):
        return parser.parse_args(["run", *args])
    parsed = parser.parse_args(args)
    # A command name may also have been an option's value (--config run): then there is no command.
    return parsed if parsed.command else parser.parse_args(["run", *args])


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    try:
        return _main(argv, env)
    except BrokenPipeError:
        # `soest-gateway topics | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


def _main(argv: Sequence[str] | None, env: Mapping[str, str] | None) -> int:
    env = os.environ if env is None else env
    args = parse_args(argv, env)
    command = args.command
    # argparse checks choices only for values typed on the command line, not env defaults.
    for name, value, allowed in (("GATEWAY_LOG_LEVEL", args.log_level, LOG_LEVELS),
                                 ("GATEWAY_LOG_FORMAT", args.log_format, LOG_FORMATS)):
        if value not in allowed:
            print(f"error: {name}: {echo(value)} is not one of {', '.join(allowed)}", file=sys.stderr)
            return EXIT_USAGE
    setup_logging(args.log_level, args.log_format)
    try:
        if not args.config.strip():
            raise ConfigError("--config/GATEWAY_CONFIG: empty path (give the path of topics.yaml)")
        loaded = load(args.config)
        cat = catalog.build(loaded, ADAPTERS)
        if command == "check-config":
            load_broker(env)
            _http_port(args, env), _http_host(args, env), _data_dir(args, env), _standby(args, env)  # what run reads
            return _check_config(loaded, cat)
        if command == "topics":
            return _topics(cat)
        if command == "fetch":
            return _fetch(cat, args.source, args.json)
        if command == "discovery":
            return _discovery(cat)
        broker = load_broker(env, _broker_overrides(args))
        if command == "purge":
            return _purge(cat, broker)
        return _run(cat, broker, args, env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _broker_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in BROKER_ENV:
        value = getattr(args, f"mqtt_{field}", None)
        if value is not None:
            out[field] = value
    return out


def _check_config(loaded: Loaded, cat: catalog.Catalog) -> int:
    configs = discovery.configs(cat) if cat.settings.mqtt.discovery else {}
    print(f"{loaded.path}: OK — {len(cat.sources)} sources, {len(cat.entities())} entities, "
          f"{len(configs)} discovery configs, base topic '{cat.base}'")
    return 0


def _topics(cat: catalog.Catalog) -> int:
    configs = discovery.configs(cat) if cat.settings.mqtt.discovery else {}
    rows = contract.expand(cat, list(configs))
    width = max(len(r.topic) for r in rows)
    print(f"{'TOPIC':<{width}}  RETAIN  QOS  MEANING")
    for row in rows:
        print(f"{row.topic:<{width}}  {'yes' if row.retained else 'no':<6}  {row.qos:<3}  {row.meaning}")
    return 0


def _fetch(cat: catalog.Catalog, key: str, as_json: bool) -> int:
    from gateway.fetch import make_session
    from gateway.pipeline import collect

    spec = cat.sources.get(key)
    if spec is None:
        raise ConfigError(f"unknown or disabled source {key!r} (one of: {', '.join(sorted(cat.sources))})")
    fetched_at = datetime.now(UTC).replace(microsecond=0)
    try:
        readings = collect(spec, make_session(), None, None, fetched_at).readings or []
    except SourceError as exc:
        print(f"error: {key}: {_one_line(str(exc))} ({exc.kind})", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug in an adapter: still one line for whoever typed the command
        print(f"error: {key}: internal error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    rows = []
    for reading in readings:
        for entity in spec.by_field.get(reading.field, ()):
            rows.append({"entity": entity.key, "topic": entity.state_topic, "value": reading.value,
                         "unit": entity.measurement.unit, "observed_at": reading.observed_at,
                         "station": reading.station.name if reading.station else None})
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return 0
    for row in rows:
        value = "—" if row["value"] is None else f"{row['value']}{' ' + row['unit'] if row['unit'] else ''}"
        print(f"{row['entity']:<20} {value:<28} {row['observed_at']}  {row['station'] or ''}")
    return 0


def _discovery(cat: catalog.Catalog) -> int:
    for topic, payload in discovery.configs(cat).items():
        print(topic)
        print(json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True))
    return 0


def _purge(cat: catalog.Catalog, broker: Broker) -> int:
    from gateway.retained import purge

    filters = [f"{cat.base}/#", f"{cat.prefix}/+/{cat.node_id}/+/config"]
    cleared = purge(broker, filters, client_id=f"{cat.node_id}-purge-{os.getpid()}")
    for topic in cleared:
        print(f"cleared {topic}")
    print(f"{len(cleared)} retained topics removed")
    return 0


def _one_line(text: str) -> str:
    return text.translate(_ESCAPES)[:300]


def _setting(args: argparse.Namespace, attr: str, env: Mapping[str, str], var: str, default: str) -> tuple[str, str]:
    """A run setting and where it came from: the flag, else the variable, else the default."""
    value = getattr(args, attr, None)  # commands other than run have no such flag
    if value is not None:
        return value, "--" + attr.replace("_", "-")
    return env.get(var, default), var


def _http_port(args: argparse.Namespace, env: Mapping[str, str]) -> int | None:
    raw, origin = _setting(args, "http_port", env, "GATEWAY_HTTP_PORT", str(DEFAULT_HTTP_PORT))
    if raw.strip().lower() in _OFF:
        return None
    try:
        check_port(raw, origin)
    except ConfigError:
        raise ConfigError(f"{origin}: {echo(raw)} is not a port number (0-65535, or 'off')") from None
    if int(raw) > 65535:
        raise ConfigError(f"{origin}: {echo(raw)} is not a port number (0-65535, or 'off')")
    return int(raw)


def _http_host(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    raw, origin = _setting(args, "http_host", env, "GATEWAY_HTTP_HOST", "127.0.0.1")
    try:
        return check_host(raw)
    except ValueError as exc:  # an empty value would bind every interface: say so instead
        raise ConfigError(f"{origin}: {exc}") from None


def _data_dir(args: argparse.Namespace, env: Mapping[str, str]) -> Path | None:
    raw, origin = _setting(args, "data_dir", env, "GATEWAY_DATA_DIR", ".data/gateway")
    if raw.strip().lower() in _OFF:
        return None
    path = Path(raw)
    if "\x00" in raw or len(raw) > 4096:
        raise ConfigError(f"{origin}: {echo(raw)} is not a usable path (or 'off')")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{origin}: {echo(raw)} exists and is not a directory (or use 'off')")
    return path


def _standby(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    if getattr(args, "standby", None):
        return True
    raw = env.get("GATEWAY_STANDBY")
    return raw is not None and parse_flag(raw, "GATEWAY_STANDBY")


def _run(cat: catalog.Catalog, broker: Broker, args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from gateway.app import Gateway

    http_port = _http_port(args, env)
    http_host = _http_host(args, env)
    data_dir = _data_dir(args, env)
    standby = _standby(args, env)
    try:
        gateway = Gateway(cat, broker, http_host=http_host, http_port=http_port, data_dir=data_dir,
                          standby=standby)
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS certificate or key files (GATEWAY_MQTT_TLS_*): {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) or isinstance(exc, socket.gaierror):
            raise ConfigError(f"GATEWAY_HTTP_HOST/PORT: cannot listen on {http_host}:{http_port}: "
                              f"{exc.strerror or exc}") from None
        raise ConfigError(f"cannot start: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''})") from None

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await gateway.run(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
