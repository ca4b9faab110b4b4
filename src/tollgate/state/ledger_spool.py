"""The ledger's local spool: rows the database could not take, as fsync'd JSON lines, replayed in order."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tollgate.state.ledger import LedgerRow

log = logging.getLogger("tollgate.ledger")


class LedgerSpool:
    """Append-only file of rows waiting for the database.

    ``append`` returns only after the rows are on disk (fsync), so a row is either in the database, in
    the spool, or still in memory, never nowhere. Replay renames the file first (``<name>.replaying``),
    so rows spooled during a replay land in a fresh file and stay behind the ones being replayed; a replay
    that fails keeps its file and is retried from the start (the ledger skips rows it already has).
    Lines that cannot be parsed (a torn write at a crash) are moved to ``<name>.corrupt``, never dropped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaying = path.with_name(path.name + ".replaying")
        self.corrupt = path.with_name(path.name + ".corrupt")
        self._lock = threading.Lock()  # appends come from the event loop and from worker threads
        # False only when this process knows both files are empty: the writer asks before every batch,
        # and a spool is empty nearly always, so the files are looked at again only after an append.
        self._maybe_pending = True

    def append(self, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        data = b"".join(r.to_json() + b"\n" for r in rows)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._maybe_pending = True

    def adopt(self, path: Path) -> int:
        """Append the rows of another file of row lines (a journal segment) to the spool, fsync'd, then
        delete it; returns how many lines it held. A crash in between only repeats rows (written once by id)."""
        data = path.read_bytes() if path.exists() else b""
        count = sum(1 for line in data.splitlines() if line.strip())
        if count:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    # A leading newline: a torn last line of the spool cannot swallow the first row adopted.
                    view = memoryview(b"\n" + data + (b"" if data.endswith(b"\n") else b"\n"))
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._maybe_pending = True
        path.unlink(missing_ok=True)
        return count

    def pending(self) -> bool:
        if not self._maybe_pending:
            return False
        with self._lock:
            found = _size(self.replaying) > 0 or _size(self.path) > 0
            self._maybe_pending = found
        return found

    def count(self) -> int:
        """Rows waiting (lines in both files): for tests, metrics and the health report."""
        with self._lock:
            return _lines(self.replaying) + _lines(self.path)

    def _take(self) -> list[bytes]:
        """The lines to replay next: the unfinished replay if any, else the live file (renamed away)."""
        with self._lock:
            if _size(self.replaying) == 0:
                if _size(self.path) == 0:
                    return []
                os.replace(self.path, self.replaying)
            return self.replaying.read_bytes().splitlines()

    def _parse(self, lines: list[bytes]) -> list[LedgerRow]:
        rows: list[LedgerRow] = []
        bad: list[bytes] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rows.append(LedgerRow.from_json(line))
            except ValueError:
                bad.append(line)
        if bad:
            log.error("ledger spool: %d unreadable line(s) moved to %s", len(bad), self.corrupt)
            with self._lock, open(self.corrupt, "ab") as fh:
                fh.write(b"".join(b + b"\n" for b in bad))
                fh.flush()
                os.fsync(fh.fileno())
        return rows

    def _done(self) -> None:
        with self._lock:
            self.replaying.unlink(missing_ok=True)

    async def replay(
        self,
        write: Callable[[Sequence[LedgerRow]], Awaitable[int]],
        batch_size: int,
    ) -> int:
        """Write every spooled row, oldest first; returns how many the ledger did not have yet.
        Raises (keeping the spool) when a write fails."""
        written = 0
        while True:
            lines = await asyncio.to_thread(self._take)
            if not lines:
                return written
            rows = await asyncio.to_thread(self._parse, lines)
            for i in range(0, len(rows), batch_size):
                written += await write(rows[i : i + batch_size])
            await asyncio.to_thread(self._done)
            log.info("ledger spool: replayed %d row(s) from %s", len(rows), self.replaying)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0
