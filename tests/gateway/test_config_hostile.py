"""Hostile or careless configuration: every mistake is one line naming where, and YAML costs are bounded."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters import ADAPTERS
from gateway import catalog
from gateway.cli import build_parser, main, setup_logging
from gateway.config import MAX_CONFIG_BYTES, load, load_broker, loads, parse_yaml
from gateway.errors import ConfigError
from tests.helpers import ROOT

DEFAULT_TEXT = (ROOT / "topics.yaml").read_text()


def line_of(text: str, fragment: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if fragment in row)


def one_line_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        catalog.build(loads(text, Path("topics.yaml")), ADAPTERS)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("topics.yaml"), message
    return message


def edited(tmp_path: Path, mutate: Any) -> Path:
    data = yaml.safe_load(DEFAULT_TEXT)
    mutate(data)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


# --------------------------------------------------------------------------- 1. time zone names


@pytest.mark.parametrize("zone", ["Europe", "Europe/", "", "../etc", "America/" + "x" * 5000, "Europe/Ber\x00lin",
                                  "zone.tab", "/etc/localtime"])
def test_invalid_zone_name_is_a_one_line_error(zone: str):
    text = DEFAULT_TEXT.replace("timezone: Europe/Berlin", f"timezone: {json.dumps(zone)}", 1)
    message = one_line_error(text)
    assert message.startswith(f"topics.yaml:{line_of(DEFAULT_TEXT, 'timezone:')}: city.timezone: unknown time zone")
    assert len(message) < 250


def test_invalid_zone_name_in_adapter_options_is_a_one_line_error():
    """Adapters check their own ``timezone`` option with the same rule (it crashed on directories too)."""
    data = yaml.safe_load(DEFAULT_TEXT)
    data["sources"]["brightsky"].setdefault("options", {})["timezone"] = "Europe"
    with pytest.raises(ConfigError) as info:
        catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), Path("topics.yaml")), ADAPTERS)
    message = str(info.value)
    assert "sources.brightsky.options.timezone" in message
    assert "unknown time zone 'Europe'" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- 2. duplicate keys


def test_duplicate_source_key_names_both_lines():
    first = line_of(DEFAULT_TEXT, "  sun:")
    text = DEFAULT_TEXT.replace("sources:\n", "sources:\n  sun:\n    adapter: sun\n", 1)
    second = line_of(text, "  sun:")  # the new one, at the top
    first += 2  # two lines were inserted above it
    assert one_line_error(text) == f"topics.yaml:{first}: sources.sun: duplicate key (first defined on line {second})"


def test_duplicate_nested_key():
    line = line_of(DEFAULT_TEXT, "  timezone:")
    text = DEFAULT_TEXT.replace("  timezone: Europe/Berlin\n", "  timezone: Europe/Berlin\n  timezone: UTC\n", 1)
    assert one_line_error(text) == (f"topics.yaml:{line + 1}: city.timezone: duplicate key "
                                    f"(first defined on line {line})")


def test_keys_equal_as_values_are_duplicates():
    with pytest.raises(ConfigError, match=r"^x:2: '1.0': duplicate key \(first defined on line 1\)"):
        loads("1: a\n1.0: b\n", Path("x"))


def test_merge_key_may_be_overridden():
    data = parse_yaml("base: &b {every: 10m, timeout: 5s}\nsrc: {<<: *b, every: 5m}\n", Path("x"))
    assert data["src"] == {"every": "5m", "timeout": "5s"}


# --------------------------------------------------------------------------- 4. bounded cost


def test_echoed_input_is_capped():
    text = DEFAULT_TEXT.replace("every: 10m ", "every: [" + ", ".join(["1"] * 5000) + "] ", 1)
    message = one_line_error(text)
    assert "sources.brightsky.every: [1, 1, 1" in message
    assert len(message) < 250, len(message)


def test_huge_key_is_capped():
    # An explicit key ("? "), since PyYAML allows plain keys of at most 1024 characters.
    text = DEFAULT_TEXT.replace("sources:\n", "sources:\n  ? " + "k" * 100_000 + "\n  : {}\n", 1)
    message = one_line_error(text)
    assert "'kkkk" in message
    assert len(message) < 400, len(message)


def test_alias_bomb_is_rejected_within_a_second():
    laughs = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        name, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
        laughs.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    text = DEFAULT_TEXT + "\nlaughs:\n" + "\n".join("  " + row for row in laughs) + "\n"
    started = time.monotonic()
    message = one_line_error(text)
    assert time.monotonic() - started < 1.0  # the feature: the old loader ran 40 s at 1.6 GB
    assert "aliases expand to more than 10000 nodes" in message


def test_aliases_within_limits_still_work():
    text = DEFAULT_TEXT.replace("sources:\n", "defaults: &fast {every: 5m}\nsources:\n", 1)
    message = one_line_error(text)  # the anchor parses; only the unknown top-level field is reported
    assert "unknown field 'defaults'" in message


@pytest.mark.parametrize(("text", "fragment"), [
    ("[" * 10_000, "nested deeper than 32 levels"),
    ("a: &a [1, *a]\n", "recursive"),
    ("a: " + "1" * 5000 + "\n", "cannot read '111"),
    ("a: 2026-13-01\n", "cannot read '2026-13-01'"),
])
def test_yaml_that_crashed_the_loader(text: str, fragment: str):
    message = one_line_error(text)
    assert message.startswith("topics.yaml:1: invalid YAML")
    assert fragment in message


def test_config_file_size_is_capped(tmp_path: Path):
    path = tmp_path / "topics.yaml"
    path.write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match=r": larger than 1 MiB, the most a config may be$"):
        load(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_config_file_is_capped():
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load("/dev/zero")


# --------------------------------------------------------------------------- 5. schedules and durations


def test_every_has_a_lower_bound_and_says_what_a_number_means():
    message = one_line_error(DEFAULT_TEXT.replace("every: 10m ", "every: 0.001 ", 1))
    assert message == (f"topics.yaml:{line_of(DEFAULT_TEXT, 'every: 10m ')}: sources.brightsky.every: 0.001 is too "
                       "short: at least 1s (e.g. 30s, 10m, 1h; a bare number means seconds)")


@pytest.mark.parametrize("where", ["sources.brightsky.every", "sources.brightsky.jitter", "sources.brightsky.timeout",
                                   "sources.brightsky.max_age", "mqtt.heartbeat", "mqtt.birth_delay",
                                   "mqtt.reconnect_min", "mqtt.reconnect_max", "http.per_host_interval"])
@pytest.mark.parametrize("value", [1e300, float("inf"), float("nan"), "99999999999999999999d"])
def test_absurd_durations_are_one_line_errors(tmp_path: Path, where: str, value: object):
    section, *rest = where.split(".")

    def mutate(d: dict[str, Any]) -> None:
        target = d.setdefault(section, {})
        for part in rest[:-1]:
            target = target[part]
        target[rest[-1]] = value

    with pytest.raises(ConfigError) as info:
        catalog.build(load(edited(tmp_path, mutate)), ADAPTERS)
    message = str(info.value)
    assert "\n" not in message
    assert f": {where}: " in message
    assert "too long" in message or "not a duration" in message


def test_reconnect_min_above_max_is_an_error(tmp_path: Path):
    path = edited(tmp_path, lambda d: d["mqtt"].update(reconnect_min="10s", reconnect_max="5s"))
    with pytest.raises(ConfigError, match=r"mqtt: reconnect_min \(10s\) must not exceed reconnect_max \(5s\)"):
        load(path)


@pytest.mark.parametrize(("cron", "fragment"), [
    ("0 0 31 2 *", "never fires"),
    ("\u0661 * * * *", "digits 0-9"),
    ("*/0 * * * *", "Increment must be higher than 0"),
    ("0 0 1 1 " + "1" * 200, "at most 100 characters"),
])
def test_silly_cron_fields(tmp_path: Path, cron: str, fragment: str):
    path = edited(tmp_path, lambda d: d["sources"]["brightsky"].update(every=None, cron=cron))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert fragment in str(info.value)
    assert "sources.brightsky" in str(info.value)


# --------------------------------------------------------------------------- 3, 6. command line and environment


def run_cli(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv, env=env)
    return code, capsys.readouterr().err.strip().splitlines()


def test_config_before_the_command_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no topics.yaml here: only the given one can be read
    assert main(["--config", str(ROOT / "topics.yaml"), "check-config"], env={}) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["check-config", "--config", str(ROOT / "topics.yaml")], env={}) == 0


@pytest.mark.parametrize("argv", [["--log-format", "json", "--log-level", "debug", "topics"],
                                  ["topics", "--log-format", "json", "--log-level", "debug"]])
def test_log_options_before_or_after_the_command(argv: list[str]):
    args = build_parser().parse_args(argv)
    assert (args.command, args.log_format, args.log_level) == ("topics", "json", "debug")


def test_bare_invocation_runs(capsys: pytest.CaptureFixture[str]):
    # Without a command it is `run`: run's own flags are accepted, and run's checks apply.
    code, lines = run_cli(["--config", str(ROOT / "topics.yaml"), "--http-port", "nope"], {}, capsys)
    assert (code, lines) == (2, ["error: --http-port: 'nope' is not a port number (0-65535, or 'off')"])
    code, lines = run_cli(["--config", str(ROOT / "topics.yaml")], {"GATEWAY_HTTP_PORT": "nope"}, capsys)
    assert (code, lines) == (2, ["error: GATEWAY_HTTP_PORT: 'nope' is not a port number (0-65535, or 'off')"])


@pytest.mark.parametrize(("env", "fragment"), [
    ({"GATEWAY_HTTP_PORT": "\u00b2"}, "error: GATEWAY_HTTP_PORT: '²' is not a port number"),
    ({"GATEWAY_HTTP_PORT": "\u0661\u0662"}, "error: GATEWAY_HTTP_PORT: '١٢' is not a port number"),
    ({"GATEWAY_MQTT_PORT": "\u00b2"}, "error: GATEWAY_MQTT_PORT: '²' is not a port number"),
    ({"GATEWAY_HTTP_HOST": ""}, "error: GATEWAY_HTTP_HOST: '' is not a host name or IP address"),
    ({"GATEWAY_HTTP_HOST": "a b"}, "error: GATEWAY_HTTP_HOST: 'a b' is not a host name"),
    ({"GATEWAY_MQTT_HOST": ""}, "error: GATEWAY_MQTT_HOST: '' is not a host name"),
    ({"GATEWAY_DATA_DIR": str(ROOT / "topics.yaml")}, "is not a directory"),
    ({"GATEWAY_CONFIG": ""}, "error: --config/GATEWAY_CONFIG: empty path"),
    ({"GATEWAY_LOG_FORMAT": "xml"}, "error: GATEWAY_LOG_FORMAT: 'xml' is not one of text, json"),
    ({"GATEWAY_MQTT_TLS": "\u00b2"}, "error: GATEWAY_MQTT_TLS: '²' is not a boolean"),
    ({"GATEWAY_MQTT_PASSWORD_FILE": str(ROOT)}, "GATEWAY_MQTT_PASSWORD_FILE: cannot read"),
    ({"GATEWAY_MQTT_PASSWORD_FILE": "/dev/zero"}, "GATEWAY_MQTT_PASSWORD_FILE: '/dev/zero' is larger than 64 KiB"),
    ({"GATEWAY_MQTT_TLS_CA": str(ROOT)}, "GATEWAY_MQTT_TLS_CA: tls_ca: file"),
])
def test_every_variable_gives_one_line(env: dict[str, str], fragment: str, capsys: pytest.CaptureFixture[str]):
    env = {"GATEWAY_CONFIG": str(ROOT / "topics.yaml"), **env}
    code, lines = run_cli(["check-config"], env, capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert fragment in lines[0], lines[0]


def test_tls_file_that_is_a_directory_says_so():
    with pytest.raises(ConfigError, match=r"^GATEWAY_MQTT_TLS_CA: tls_ca: file '.*' is a directory$"):
        load_broker({"GATEWAY_MQTT_TLS_CA": str(ROOT)})


def test_cli_broker_flag_is_named_as_typed():
    with pytest.raises(ConfigError, match=r"^--mqtt-port: 'x' is not a port number"):
        load_broker({}, {"port": "x"})


# --------------------------------------------------------------------------- 7. fetch, 8. logging


def test_fetch_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def broken(*_: object) -> None:
        raise KeyError("station\nid")

    monkeypatch.setattr("gateway.pipeline.collect", broken)
    code, lines = run_cli(["fetch", "sun", "--config", str(ROOT / "topics.yaml")], {}, capsys)
    assert (code, lines) == (1, ["error: sun: internal error: KeyError: 'station\\nid'"])


def test_text_log_message_with_newline_is_one_line(capsys: pytest.CaptureFixture[str]):
    setup_logging("info", "text")
    try:
        logging.getLogger("gateway.test").warning("upstream said %s", "ok\n2026-01-01 00:00:00 ERROR forged\x1b[2J\r")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("gateway.test").exception("with\ttraceback")
    finally:
        setup_logging("warning", "text")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("gateway.test: upstream said ok\\n2026-01-01 00:00:00 ERROR forged\\x1b[2J\\r")
    assert lines[1].endswith("gateway.test: with\ttraceback")
    assert lines[2] == "Traceback (most recent call last):"  # the traceback itself stays readable
