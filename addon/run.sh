#!/bin/sh
# Add-on entrypoint: gateway.addon reads /data/options.json, asks the Supervisor for the MQTT
# broker, writes /data/topics.yaml and execs the gateway (which then is this container's PID 1).
exec /opt/venv/bin/python -m gateway.addon
