"""The data directory: last-known states and the registry of published discovery configs.

Written atomically (temp file, fsync, rename), so a crash never leaves half a file. A file that
cannot be read is moved aside with a warning; the gateway then starts as if it were new.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_FILE = "state.json"


class StateFile:
    """One JSON document in the data directory."""

    def __init__(self, directory: Path, name: str = STATE_FILE) -> None:
        self.directory = directory
        self.path = directory / name

    def load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s (%s); starting without saved state", self.path, exc.strerror)
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("not a state file of this version")
        except (ValueError, RecursionError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path
            log.warning("saved state %s is unreadable (%s); moved it to %s and starting fresh",
                        self.path, str(exc)[:80], aside.name)
            return {}
        return data

    def save(self, data: dict[str, Any]) -> bool:
        """Write ``data`` atomically; returns False (and logs) when the directory is not writable."""
        payload = json.dumps({"version": FORMAT_VERSION, **data}, ensure_ascii=False,
                             separators=(",", ":")).encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}-", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("cannot save state to %s: %s", self.path, exc.strerror or exc)
            return False
        return True
