"""Container images: build time (cold and cached), size and where the size goes.

Builds with scripts/build-image (podman here, docs/container.md) and prints one JSON object, also
written to bench/results/image.json:

- ``cold_s``: a fresh machine of this kind with podman installed: an empty image store and no
  cached base rootfs (debootstrap, import, both stages, pip from PyPI), then the add-on image.
  Uses a throw-away image store and cache, so the real cache is left alone. Skipped with --no-cold.
- ``cached_s``: scripts/build-image again with nothing changed (what a test rerun pays).
- sizes in MB (10^6 bytes, as podman and Docker print them): the image, its base, the layers the
  Dockerfile adds, the venv alone; the same for the add-on image.

    .venv/bin/python bench/image.py             # about 1.5 min cold on 2 cores, then seconds
    .venv/bin/python bench/image.py --no-cold
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build-image"
RESULTS = ROOT / "bench" / "results" / "image.json"
IMAGE = "soest-mqtt-gateway"
ADDON = "soest-mqtt-gateway-addon"
MB = 1e6


def timed_build(*args: str, env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    subprocess.run([str(BUILD), "--engine", "podman", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    return round(time.monotonic() - start, 1)


def podman_json(*args: str, env: dict[str, str] | None = None) -> Any:
    out = subprocess.run(["podman", *args], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def sizes(tag: str) -> dict[str, float]:
    (image,) = podman_json("image", "inspect", tag)
    history = podman_json("history", "--format", "json", tag)
    # The base is the first layer podman records (the imported rootfs, or the pulled python:3.11-slim).
    base = history[-1]["size"]
    venv = max((h["size"] for h in history if "COPY dir:" in h.get("CreatedBy", "")
                or "/opt/venv" in h.get("CreatedBy", "")), default=0)
    return {"image_mb": round(image["Size"] / MB, 1), "base_mb": round(base / MB, 1),
            "added_mb": round((image["Size"] - base) / MB, 1), "largest_added_layer_mb": round(venv / MB, 1)}


def cold() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="soest-image-bench-") as tmp:
        storage = Path(tmp) / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp}/graph"\nrunroot = "{tmp}/run"\n')
        env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage), "SOEST_IMAGE_CACHE": f"{tmp}/cache"}
        graphroot = subprocess.run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
        if graphroot != f"{tmp}/graph":  # never build into (or clean up) the real store by mistake
            raise SystemExit(f"podman ignores CONTAINERS_STORAGE_CONF (store {graphroot}); use --no-cold")
        try:
            image = timed_build(env=env)
            addon = timed_build("--addon", env=env)
        finally:
            # The throw-away store's overlay mounts must go before its directory can.
            subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True, check=False)
        return {"cold_s": image, "cold_addon_s": addon}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true", help="skip the build from an empty store")
    args = parser.parse_args()
    result: dict[str, Any] = {"cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}
    if not args.no_cold:
        result.update(cold())
    timed_build()  # make sure the real store has the current image before timing a no-change rebuild
    result["cached_s"] = timed_build()
    timed_build("--addon")
    result["cached_addon_s"] = timed_build("--addon")
    result["image"] = sizes(IMAGE)
    result["addon"] = sizes(ADDON)
    print(json.dumps(result), flush=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
