#!/usr/bin/env bash
# Install everything and run the gateway with the default config (topics.yaml, Soest).
# Starts the bundled Mosquitto (mosquitto/local.conf) when nothing listens on the broker port.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap
host="${GATEWAY_MQTT_HOST:-127.0.0.1}"
port="${GATEWAY_MQTT_PORT:-1883}"
broker_pid=""
if ! (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null; then
  if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ] || [ "$port" != "1883" ]; then
    echo "no MQTT broker at ${host}:${port}; start one or unset GATEWAY_MQTT_HOST/PORT" >&2
    exit 1
  fi
  scripts/ensure-mosquitto
  mkdir -p .data/mosquitto
  echo "starting the bundled Mosquitto on 127.0.0.1:1883 (mosquitto/local.conf)"
  "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c mosquitto/local.conf &
  broker_pid=$!
  trap '[ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null' EXIT
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/1883") 2>/dev/null && break; sleep 0.1; done
fi
.venv/bin/soest-gateway run "$@"
