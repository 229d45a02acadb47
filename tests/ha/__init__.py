"""A real Home Assistant core (scripts/ensure-ha) against the gateway and a test Mosquitto."""
