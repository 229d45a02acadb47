"""Command-line odds and ends: logging formats, the topics listing, discovery printing."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from gateway.cli import main, setup_logging
from tests.helpers import ROOT


def test_json_log_lines(capsys: pytest.CaptureFixture[str]):
    setup_logging("info", "json")
    logging.getLogger("gateway.test").warning("source %s offline", "brightsky")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["level"] == "warning"
    assert record["message"] == "source brightsky offline"
    assert record["logger"] == "gateway.test"
    assert record["time"].endswith("+00:00")
    setup_logging("warning", "text")


def test_topics_lists_every_topic_with_retain_and_qos(capsys: pytest.CaptureFixture[str]):
    assert main(["topics", "--config", str(ROOT / "topics.yaml")], env={}) == 0
    out = capsys.readouterr().out
    assert "soest/brightsky/temperature " in out
    assert "homeassistant/sensor/soest/soest_brightsky_temperature/config" in out
    assert "soest/gateway/refresh" in out
    header, first = out.splitlines()[:2]
    assert header.split() == ["TOPIC", "RETAIN", "QOS", "MEANING"]
    assert first.split()[:3] == ["soest/gateway/status", "yes", "1"]


def test_discovery_print_is_valid_json(capsys: pytest.CaptureFixture[str]):
    assert main(["discovery", "--print", "--config", str(ROOT / "topics.yaml")], env={}) == 0
    out = capsys.readouterr().out
    blocks = out.split("\nhomeassistant/")
    assert len(blocks) > 100
    first_topic, _, first_json = blocks[0].partition("\n")
    assert first_topic.startswith("homeassistant/")
    assert json.loads(first_json)["unique_id"]


def test_bad_port_variable_is_a_one_line_error():
    result = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(ROOT / "topics.yaml")],
                            capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={"GATEWAY_MQTT_PORT": "eighteen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: GATEWAY_MQTT_PORT: 'eighteen' is not a port number (1-65535)"]


def test_env_log_level_is_checked():
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={"GATEWAY_LOG_LEVEL": "trace", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: GATEWAY_LOG_LEVEL: 'trace' is not one of debug, info, warning, error"


def test_http_port_in_use_is_a_one_line_error():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(ROOT / "topics.yaml")],
                                capture_output=True, text=True, cwd=ROOT, timeout=60,
                                env={"GATEWAY_HTTP_PORT": str(port), "GATEWAY_MQTT_PORT": "9",
                                     "GATEWAY_DATA_DIR": "off", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: GATEWAY_HTTP_HOST/PORT: cannot listen on 127.0.0.1:{port}")
