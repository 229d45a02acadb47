"""Soest MQTT gateway: open city data to MQTT with Home Assistant discovery."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/soest-mqtt-gateway/soest-mqtt-gateway"
