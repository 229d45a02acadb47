"""The data directory: last-known states and the registry of published discovery configs.

Written atomically (temp file, fsync, rename), so a crash never leaves half a file. A file that
cannot be read, is not a regular file or is larger than MAX_FILE_BYTES is moved aside with a
warning; the gateway then starts as if it were new. The directory is trusted no more than upstream.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STATE_FILE = "state.json"
# Far above what 100,000 entities need (about 15 MB); a symlink to /dev/zero or a runaway file
# must not be read into memory whole.
MAX_FILE_BYTES = 64 * 1024 * 1024


class StateFile:
    """One JSON document in the data directory."""

    def __init__(self, directory: Path, name: str = STATE_FILE) -> None:
        self.directory = directory
        self.path = directory / name

    def load(self, max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
        try:
            raw = self._read(max_bytes)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s (%s); starting without saved state", self.path, exc.strerror)
            return {}
        try:
            if raw is None:
                raise ValueError(f"not a regular file of at most {max_bytes} bytes")
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("not a state file of this version")
        except (ValueError, RecursionError) as exc:
            self._move_aside(str(exc))
            return {}
        return data

    def _read(self, max_bytes: int) -> bytes | None:
        """The file's bytes; None if it is no regular file or longer than ``max_bytes``."""
        # O_NONBLOCK: opening a FIFO planted in the directory must not hang the start.
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                return None
            raw = fh.read(max_bytes + 1)  # the file may grow between fstat and read
        return raw if len(raw) <= max_bytes else None

    def _move_aside(self, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        try:
            os.replace(self.path, aside)
        except OSError:
            aside = self.path
        log.warning("saved state %s is unreadable (%s); moved it to %s and starting fresh",
                    self.path, why[:80], aside.name)

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
