"""Standby takeover: SIGKILL the active gateway, time until the standby has published the whole tree again.

Two gateways with --standby on one Mosquitto, every default source served by the fixture server
(the whole default tree). Prints one JSON line per run: seconds from the kill to the standby's
takeover, and to the last state/status/info topic of the tree published by it.

    .venv/bin/python bench/takeover.py                 # the default lease (15 s)
    .venv/bin/python bench/takeover.py --lease 3s --runs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import (  # noqa: E402
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    expected_tree,
    wait_until,
    write_config,
)
from tests.sources import serve_default_sources  # noqa: E402

DEADLINE = 30.0  # issue #11


def config(directory: Path, upstream: FixtureServer, lease: str | None) -> Path:
    def edit(data: dict[str, Any]) -> None:
        if lease is not None:
            data["mqtt"]["lease"] = lease

    directory.mkdir()
    return write_config(directory / "topics.yaml", upstream.url, edit=edit)


def one_run(workdir: Path, lease: str | None) -> dict[str, float]:
    broker = Mosquitto(workdir).start()
    upstream = FixtureServer()
    served = serve_default_sources(upstream, upstream.url)
    first_cfg, second_cfg = config(workdir / "a", upstream, lease), config(workdir / "b", upstream, lease)
    own = {t for t in expected_tree(second_cfg, served) if not t.startswith("homeassistant/")}
    first = GatewayProcess(first_cfg, broker.port, args=["--standby"])
    second = None
    try:
        wait_until(lambda: "takes over" in first.log and "first run: " in first.log, timeout=120)
        second = GatewayProcess(second_cfg, broker.port, args=["--standby"])
        wait_until(lambda: "is active (since" in second.log, timeout=120)
        live = Subscriber(broker.port, "soest/#", live=True)
        live.sync()
        mark = live.mark()
        first.kill()
        killed = time.monotonic()
        wait_until(lambda: "this instance" in second.log and " takes over" in second.log.split("is active (since")[-1],
                   timeout=120, interval=0.01)
        took_over = time.monotonic() - killed
        wait_until(lambda: own <= {m.topic for m in live.snapshot()[mark:] if m.retain and m.payload},
                   timeout=120, interval=0.01)
        served_again = time.monotonic() - killed
        live.close()
        return {"takeover_s": round(took_over, 2), "tree_s": round(served_again, 2), "topics": len(own)}
    finally:
        for proc in (first, second):
            if proc is not None and proc.proc.poll() is None:
                proc.terminate()
        upstream.close()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", default=None, help="mqtt.lease for both gateways (default: the shipped 15s)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="takeover-") as tmp:
            result = one_run(Path(tmp), args.lease)
        result.update(run=run + 1, lease=args.lease or "15s (default)",
                      within_30s=result["tree_s"] <= DEADLINE)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
