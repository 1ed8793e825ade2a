"""The output folder: parquet part files, each written whole under a temporary name and then renamed, so a reader (or
a resume) sees a part entirely or not at all. Only the driver writes here, and it writes an id once: the exactly-once
guarantee lives in this file, not in Ray's retries.
"""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ..errors import DistilWhisperError
from .rows import SCHEMA

PART_GLOB = "part-*.parquet"


class Store:
    """Appends rows to `folder` as part files, skipping ids already there (from an earlier run, or written twice by a
    retried replica)."""

    def __init__(self, folder: Path):
        self.folder = folder
        remove_torn_files(folder)
        self.parts = sorted(folder.glob(PART_GLOB))
        self.ids: set[str] = set()
        self.failed = 0  # error rows
        for part in self.parts:
            table = pq.read_table(part, columns=["id", "error"])
            self.ids.update(table.column("id").to_pylist())
            self.failed += table.num_rows - table.column("error").null_count

    def write(self, rows: list[dict]) -> list[dict]:
        """Write the rows whose id is new as one part file; return those rows."""
        new, batch_ids = [], set()
        for row in rows:
            if row["id"] not in self.ids and row["id"] not in batch_ids:
                new.append(row)
                batch_ids.add(row["id"])
        if new:
            target = self.folder / f"part-{len(self.parts):06d}.parquet"
            write_table_atomically(pa.Table.from_pylist(new, schema=SCHEMA), target)
            self.parts.append(target)
            self.ids |= batch_ids
            self.failed += sum(1 for row in new if row["error"] is not None)
        return new

    def rows(self, columns: list[str]) -> Iterator[dict]:
        for part in self.parts:
            yield from pq.read_table(part, columns=columns).to_pylist()


def write_table_atomically(table: pa.Table, target: Path) -> None:
    """Write to a temporary name beside `target`, flushed to disk, then rename: a driver killed mid-write leaves a
    .tmp file (which the next run removes), never a torn part."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def remove_torn_files(folder: Path) -> None:
    """Temporary files a killed driver left: never renamed, so never part of the output."""
    for tmp in folder.glob(".part-*.tmp"):
        tmp.unlink()
    for part in folder.glob(PART_GLOB):
        try:
            pq.read_metadata(part)
        except Exception as e:  # noqa: BLE001 - a part that is not whole parquet was not written by this code
            raise DistilWhisperError(f"{part} is not a whole parquet file ({e}); move it away and resume") from None
