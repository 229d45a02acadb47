#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run calls it): install Mosquitto, Chromium and
# nats-server when missing, the gateway with its test tools, lint, and run the whole test suite in
# random order against real brokers (Mosquitto, and a 3-node NATS cluster for tests/cluster) that the
# tests start themselves. The container suite (tests/container, marker container) builds the
# images itself with scripts/build-image, which installs podman & co. when missing (cached after
# the first run). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-mosquitto
scripts/ensure-chromium
scripts/ensure-nats
scripts/ensure-ha
scripts/bootstrap --test
.venv/bin/ruff check .
# A seed of our own unless the caller chose one (or turned pytest-randomly off), printed so that a
# failure in one order can be replayed exactly.
case " $* " in
  *randomly*) exec .venv/bin/python -m pytest "$@" ;;
esac
seed="${RANDOMLY_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
echo "test order: random, seed $seed (replay: ./test.sh -p randomly --randomly-seed=$seed)"
exec .venv/bin/python -m pytest -p randomly --randomly-seed="$seed" "$@"
