"""The ledger's journal: every row on disk the moment it is made, so a killed process loses none.

The ledger writer batches rows in memory for a fraction of a second before writing them to the database.
A process that is killed (SIGKILL, the OOM killer, a crash) in that window would lose the rows of requests
it already answered. So each row is also appended to a journal file as it is made: one ``write`` to the
page cache, no ``fsync`` (a killed process's writes survive; only a machine crash can lose the last
moments). The journal is cut into segments: the writer seals the current one at the start of each pass,
and once that pass has written (or spooled) every row queued, the sealed segments are deleted. At start,
segments left by an earlier run are moved into the spool and replayed like it; ledger writes are
idempotent per row id, so rows that had also reached the database are recorded once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from tollgate.state.ledger import LedgerRow

log = logging.getLogger("tollgate.ledger")


class LedgerJournal:
    """Segments ``<spool name>.journal-<n>`` next to the spool."""

    def __init__(self, spool_path: Path) -> None:
        self.folder = spool_path.parent
        self.prefix = spool_path.name + ".journal-"
        self._pattern = re.compile(re.escape(self.prefix) + r"(\d+)")
        self._lock = threading.Lock()
        self._fd = -1
        self._segment = 0
        self.errors = 0  # rows that could not be journaled (still queued in memory)

    def segments(self) -> list[Path]:
        """The journal's segment files, oldest first."""
        found = []
        for path in self.folder.glob(self.prefix + "*"):
            match = self._pattern.fullmatch(path.name)
            if match is not None:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def open(self) -> list[Path]:
        """Start a fresh segment after any left by an earlier run; returns those (to recover)."""
        with self._lock:
            left = self.segments()
            last = self._pattern.fullmatch(left[-1].name) if left else None
            self._segment = int(last.group(1)) + 1 if last is not None else 1
            self._open_segment()
            return left

    def _open_segment(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.prefix}{self._segment}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def append(self, row: LedgerRow) -> None:
        """One row, one ``write`` (never raises: a journal that cannot be written is logged and counted)."""
        data = row.to_json() + b"\n"
        with self._lock:
            if self._fd < 0:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self.errors += 1
                if self.errors == 1 or self.errors % 1000 == 0:
                    log.exception("ledger journal %s is not writable (%d row(s) so far)", self.folder, self.errors)

    def seal(self) -> int:
        """Close the current segment and start the next; returns the sealed segment's number."""
        with self._lock:
            sealed = self._segment
            if self._fd >= 0:
                os.close(self._fd)
            self._segment += 1
            try:
                self._open_segment()
            except OSError:
                self._fd = -1
                log.exception("ledger journal: cannot open a new segment in %s", self.folder)
            return sealed

    def seal_all(self) -> int:
        """After ``close``: the number of the last segment (every segment is sealed)."""
        with self._lock:
            return self._segment

    def release(self, up_to: int) -> None:
        """Delete the sealed segments up to ``up_to``: every row in them is in the database or the spool."""
        for path in self.segments():
            match = self._pattern.fullmatch(path.name)
            if match is not None and int(match.group(1)) <= up_to:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
