"""ha-mqtt-discoverable announcing N sensors (discovery config + first state), for comparison.

Runs in its own virtualenv (bench/run.py creates it), in HMD's default mode (a connection per
sensor) or with one shared client.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import paho.mqtt.client as mqtt
from ha_mqtt_discoverable import DeviceInfo, Settings
from ha_mqtt_discoverable.sensors import Sensor, SensorInfo
from paho.mqtt.enums import CallbackAPIVersion


def main(count: int, port: int, shared: bool) -> dict[str, float]:
    """``shared``: one client for all sensors (HMD's option); otherwise HMD's default, as in its
    README: every sensor opens its own MQTT connection and network thread."""
    t0, t0_wall = time.perf_counter(), time.time()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hmd-bench")
    client.connect("127.0.0.1", port)
    client.loop_start()
    mqtt_settings = Settings.MQTT(host="127.0.0.1", port=port, client=client if shared else None)
    device = DeviceInfo(name="hmdbench", identifiers="hmdbench")
    last = None
    for i in range(count):
        info = SensorInfo(name=f"e{i}", unique_id=f"hmdbench_e{i}", device=device, device_class="temperature",
                          unit_of_measurement="°C", state_class="measurement")
        sensor = Sensor(Settings(mqtt=mqtt_settings, entity=info))
        sensor.set_state(10.0 + (i % 1000) * 0.001)
        last = sensor
    # HMD publishes with QoS 0; a QoS 1 message after the last one tells when all went out.
    info = last.mqtt_client.publish("hmdbench/flush", b"x", qos=1)
    info.wait_for_publish(120)
    t1 = time.perf_counter()
    client.disconnect()
    client.loop_stop()
    return {"entities": count, "announce_s": t1 - t0, "t0_wall": t0_wall, "shared_client": shared}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shared-client", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(args.entities, args.port, args.shared_client)))
