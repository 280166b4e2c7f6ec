"""Immutable Parquet shards: written to a temporary name and renamed, so a crash never leaves half a shard."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def temporary_name(path: Path) -> Path:
    """A unique name beside `path` that no `*.parquet` glob matches: concurrent writers never share one."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def write_parquet(table: pa.Table, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def remove_temporaries(folder: Path) -> None:
    """Temporary files a killed writer left behind (no reader ever sees them; this only frees the space)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


class ShardWriter:
    """Writes row groups into numbered shards, starting a new shard past `max_rows` rows or `max_bytes` bytes.

    Rows arrive in batches (lists of columns); each batch becomes a row group, so memory holds one batch. A shard
    is renamed into place when it is full or at `close()`: readers only ever see whole shards.
    """

    def __init__(
        self, path_of: Callable[[int], Path], schema: pa.Schema, max_rows: int, max_bytes: int, first_part: int = 0
    ) -> None:
        self.path_of, self.schema = path_of, schema
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.part = first_part
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._rows = self._bytes = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            final = self.path_of(self.part)
            final.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temporary_name(final)
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        self._writer.write_table(table.cast(self.schema))
        self._rows += table.num_rows
        self._bytes += table.nbytes
        if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
            self._finish_shard()

    def room(self) -> tuple[int, int]:
        """Rows and bytes the current shard still takes before it is full."""
        return self.max_rows - self._rows, self.max_bytes - self._bytes

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = self.path_of(self.part)
        os.replace(self._tmp, final)
        self.parts.append(final)
        self._writer, self._tmp = None, None
        self._rows = self._bytes = 0
        self.part += 1

    def close(self) -> list[Path]:
        self._finish_shard()
        return self.parts

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
            self._writer = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
