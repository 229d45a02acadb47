#!/usr/bin/env bash
# Install the gateway with its test tools, lint, and run the whole test suite against real
# Mosquitto brokers that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-mosquitto
scripts/bootstrap --test
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
