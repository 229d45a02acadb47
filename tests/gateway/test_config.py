"""topics.yaml and broker settings: valid configs load, invalid ones give one precise line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load, load_broker, parse_duration
from gateway.errors import ConfigError
from tests.helpers import ROOT


def test_default_config_loads():
    loaded = load(ROOT / "topics.yaml")
    cat = catalog.build(loaded, ADAPTERS)
    assert loaded.settings.city.slug == "soest"
    assert cat.base == "soest"
    assert cat.prefix == "homeassistant"
    assert {"brightsky", "sun"} <= set(cat.sources)
    assert cat.sources["brightsky"].config.base_url == "https://api.brightsky.dev"


@pytest.mark.parametrize(("value", "seconds"), [(90, 90.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0),
                                               ("2d", 172800.0), ("0.5s", 0.5)])
def test_durations(value: object, seconds: float):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["10x", "", "m", -5, 0, True, None])
def test_bad_durations(value: object):
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(value)


def edited(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    mutate(data)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


CASES = [
    # (mutation, expected fragments of the one-line error)
    (lambda d: d["sources"]["brightsky"].update(every="10x"),
     ["sources.brightsky.every", "'10x' is not a duration", "10m"]),
    (lambda d: d["city"].update(latitude=123),
     ["city.latitude", "123", "less than or equal to 90"]),
    (lambda d: d["city"].update(ars="5974"),
     ["city.ars", "'5974'"]),
    (lambda d: d["mqtt"].update(base_topic="soest/#"),
     ["mqtt.base_topic", "no '+', '#'"]),
    (lambda d: d["sources"]["brightsky"].update(evry="10m"),
     ["sources.brightsky.evry", "unknown field 'evry'"]),
    (lambda d: d["sources"]["brightsky"].update(adapter="weatherbox"),
     ["sources.brightsky.adapter", "unknown adapter 'weatherbox'", "brightsky"]),
    (lambda d: d["sources"]["brightsky"]["entities"].update(snow_depth=None),
     ["sources.brightsky.entities.snow_depth", "unknown measurement 'snow_depth'"]),
    (lambda d: d["sources"]["brightsky"]["entities"].update(gust={"measurement": "wind_speed", "field": "gusts"}),
     ["sources.brightsky.entities.gust", "no field 'gusts'", "wind_gust_speed"]),
    (lambda d: d["measurements"]["humidity"].update(unit="°C"),
     ["measurements.humidity", "not valid with device_class 'humidity'", "'%'"]),
    # μ (U+03BC): rejected by HA 2025.7/2025.8, a warning in 2025.4; µ (U+00B5) is accepted by all.
    (lambda d: d["measurements"]["pm10"].update(unit="\u03bcg/m³"),
     ["measurements.pm10", "spells micro with μ (U+03BC)", "'\u00b5g/m³'"]),
    # atm came after HA 2025.4 (openHAB 5): refused, although the newest HA takes it.
    (lambda d: d["measurements"]["pressure"].update(unit="atm"),
     ["measurements.pressure", "'atm' is not valid", "only newer Home Assistant versions", "'hPa'"]),
    (lambda d: d["measurements"]["condition"].update(unit="mm"),
     ["measurements.condition", "enum"]),
    (lambda d: d["sources"]["brightsky"]["options"].update(max_dist=5),
     ["sources.brightsky.options.max_dist", "greater than or equal to 1000"]),
    (lambda d: d["sources"]["urban_sensors"].update(enabled=True, options={"mqtt": {"host": "x", "port": 70000}}),
     ["sources.urban_sensors.options.mqtt.port", "less than or equal to 65535"]),
    (lambda d: d["sources"]["brightsky"]["entities"].update(status=None),
     ["sources.brightsky", "'status' is reserved"]),
    (lambda d: d["sources"]["brightsky"].update(cron="*/5 * * *"),
     ["sources.brightsky", "give exactly one of 'every'"]),
    (lambda d: d["sources"]["sun"].update(every=None, cron="61 * * * *"),
     ["sources.sun", "cron '61 * * * *'"]),
    (lambda d: d["sources"]["brightsky"].update(base_url="ftp://x"),
     ["sources.brightsky.base_url", "'ftp://x'"]),
    (lambda d: d.pop("city"),
     ["city", "required field is missing"]),
    (lambda d: d["city"].update(timezone="Mars/Olympus"),
     ["city.timezone", "unknown time zone"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), CASES)
def test_invalid_config_gives_one_precise_line(tmp_path: Path, mutate, fragments: list[str]):
    path = edited(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        catalog.build(load(path), ADAPTERS)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in message, message


def test_error_names_the_line(tmp_path: Path):
    path = tmp_path / "topics.yaml"
    text = (ROOT / "topics.yaml").read_text().replace("every: 10m ", "every: ten minutes ")
    path.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "every: ten minutes" in row)
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: sources\.brightsky\.every: 'ten minutes'"):
        load(path)


@pytest.mark.parametrize(("text", "fragment"), [
    ("city: [unclosed", "invalid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_yaml_syntax_errors(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "nope.yaml")


def test_cli_exits_2_without_traceback(tmp_path: Path):
    path = edited(tmp_path, lambda d: d["sources"]["brightsky"].update(every="10x"))
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}:")
    assert "sources.brightsky.every" in lines[0]


def test_check_config_ok():
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_broker_from_env(tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    broker = load_broker({"GATEWAY_MQTT_HOST": "mqtt.local", "GATEWAY_MQTT_PORT": "8883",
                          "GATEWAY_MQTT_USERNAME": "gw", "GATEWAY_MQTT_PASSWORD_FILE": str(secret),
                          "GATEWAY_MQTT_TLS_INSECURE": "false"})
    assert broker.host == "mqtt.local"
    assert broker.port == 8883
    assert broker.password is not None
    assert broker.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(broker)
    assert not broker.use_tls
    # CLI flags win over the environment.
    assert load_broker({"GATEWAY_MQTT_PORT": "1"}, {"port": "1884"}).port == 1884


@pytest.mark.parametrize(("env", "fragment"), [
    ({"GATEWAY_MQTT_PORT": "abc"}, "GATEWAY_MQTT_PORT: 'abc'"),
    ({"GATEWAY_MQTT_PORT": "70000"}, "GATEWAY_MQTT_PORT: '70000' is out of range"),
    ({"GATEWAY_MQTT_TLS_INSECURE": "maybe"}, "GATEWAY_MQTT_TLS_INSECURE: 'maybe' is not a boolean"),
    ({"GATEWAY_MQTT_TLS_CA": "/nonexistent/ca.crt"}, "GATEWAY_MQTT_TLS_CA: tls_ca: file"),
    ({"GATEWAY_MQTT_PASSWORD_FILE": "/nonexistent/pw"}, "GATEWAY_MQTT_PASSWORD_FILE: cannot read"),
])
def test_bad_broker_env(env: dict[str, str], fragment: str):
    with pytest.raises(ConfigError) as info:
        load_broker(env)
    assert fragment in str(info.value)


def test_wildcard_entities_take_every_remaining_field(tmp_path: Path):
    def mutate(d):
        d["sources"]["brightsky"]["entities"] = {"temperature": {"name": "Air temperature"},
                                                 "*": {"measurement": "cloud_cover"}}
    cat = catalog.build(load(edited(tmp_path, mutate)), ADAPTERS)
    entities = {e.key: e for e in cat.sources["brightsky"].entities}
    assert entities["temperature"].name == "Air temperature"
    assert entities["temperature"].measurement.device_class == "temperature"
    assert entities["wind_gust_speed"].measurement.unit == "%"  # every other field, with the template
    assert entities["wind_gust_speed"].unique_id == "soest_brightsky_wind_gust_speed"
    assert len(entities) == len(cat.sources["brightsky"].adapter.fields)


def test_wildcard_needs_a_measurement(tmp_path: Path):
    path = edited(tmp_path, lambda d: d["sources"]["brightsky"]["entities"].update({"*": None}))
    with pytest.raises(ConfigError, match=r"'\*' needs a measurement"):
        catalog.build(load(path), ADAPTERS)
