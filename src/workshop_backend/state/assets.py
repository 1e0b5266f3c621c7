"""Asset bytes from the working copy, a chunk at a time, off the reactor thread.

The ``assets`` table came into the working copy with the rest of the
distribution.  Serving an asset reads it in chunks (:data:`CHUNK`), each
through SQLite's incremental BLOB I/O, so a 16 MiB image never sits in
memory whole and the HTTP layer can stop reading when a browser stops
taking.  The reads go through their own read-only ``adbapi`` pool (not the
:class:`~workshop_backend.state.store.Store`'s one writer connection), so a
large download never queues the student's writes behind it; the copy is in
WAL mode, where readers and the writer do not block each other.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred

CHUNK = 256 * 1024
"""Bytes read per request to the pool (the HTTP layer asks for this much at a time)."""


def read_chunk(conn: Any, path: str, offset: int, size: int) -> bytes:
    """``size`` bytes of the asset at ``path`` from ``offset`` (in the pool's thread).

    An ``assets`` table declared ``WITHOUT ROWID`` has no BLOB handles:
    ``substr`` then reads the value (at most an asset's cap) for each chunk.
    """
    try:
        row = conn.execute("SELECT rowid FROM assets WHERE path = ?", (path,)).fetchone()
    except sqlite3.OperationalError:
        row = ()
    if row is None:
        return b""
    if row:
        with conn.blobopen("assets", "data", row[0], readonly=True) as blob:
            blob.seek(min(offset, len(blob)))
            data: bytes = blob.read(size)
            return data
    found = conn.execute("SELECT substr(data, ?, ?) FROM assets WHERE path = ?", (offset + 1, size, path)).fetchone()
    return bytes(found[0]) if found and found[0] is not None else b""


class AssetStore:
    """Reads assets out of the working copy (read-only connections of their own).

    The pool (its threads and connections) is made on the first read: a
    container whose student never opens a step with an image never pays for
    it.
    """

    def __init__(self, path: Path, pool: adbapi.ConnectionPool | None = None) -> None:
        self.path = path
        self._pool = pool
        self._closed = False

    def read(self, path: str, offset: int, size: int) -> Deferred[bytes]:
        """``size`` bytes of an asset from ``offset`` (fewer at its end, none past it)."""
        if self._pool is None:
            self._pool = adbapi.ConnectionPool(
                "sqlite3",
                f"file:{quote(str(self.path))}?mode=ro",
                uri=True,
                check_same_thread=False,
                cp_min=1,
                cp_max=2,
                cp_noisy=False,
            )
        d: Deferred[bytes] = self._pool.runWithConnection(read_chunk, path, offset, size)
        return d

    def close(self) -> None:
        """Close the pool (if there is one); closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close()


__all__ = ["CHUNK", "AssetStore", "read_chunk"]
