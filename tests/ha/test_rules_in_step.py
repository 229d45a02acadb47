"""gateway/ha.py's rules stay in step with the Home Assistant they describe.

Its tables are the newest HA's; what HA 2025.4 (the MQTT code openHAB 5 embeds) does not take yet is
listed on top. Both are compared here with the real homeassistant 2025.4.4 package of tests/ha's
venv: every combination gateway/ha.py lets through must be one 2025.4 accepts.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from gateway import ha
from tests.ha.hass import venv, venv_problem

pytestmark = pytest.mark.ha

DUMP = """
import json
from homeassistant.components.sensor.const import DEVICE_CLASS_UNITS, SensorDeviceClass
print(json.dumps({"classes": [c.value for c in SensorDeviceClass],
                  "units": {k.value: [u for u in v] for k, v in DEVICE_CLASS_UNITS.items()}}))
"""


@pytest.fixture(scope="module")
def ha_2025_4() -> dict[str, object]:
    problem = venv_problem()
    if problem is not None:
        pytest.skip(problem)
    done = subprocess.run([str(venv() / "bin" / "python"), "-c", DUMP], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def test_the_oldest_supported_home_assistant_takes_everything_the_rules_let_through(ha_2025_4: dict):
    classes = set(ha_2025_4["classes"])
    units = {k: {None if u is None else ha.normalize_unit(u) for u in v} for k, v in ha_2025_4["units"].items()}
    numeric = set(ha.SENSOR_DEVICE_CLASS_UNITS) - ha.NON_NUMERIC_DEVICE_CLASSES - ha.ANY_UNIT_DEVICE_CLASSES
    assert numeric - classes == ha.HA_2025_4_UNKNOWN_DEVICE_CLASSES
    for device_class in sorted(numeric & classes):
        ours = ha.SENSOR_DEVICE_CLASS_UNITS[device_class]
        passed = ours - ha.HA_2025_4_UNKNOWN_UNITS.get(device_class, frozenset())
        assert passed <= units[device_class], (device_class, sorted(map(str, passed - units[device_class])))
        # and nothing is listed as unknown that 2025.4 knows (the list would refuse good units)
        assert not ha.HA_2025_4_UNKNOWN_UNITS.get(device_class, frozenset()) & units[device_class], device_class
