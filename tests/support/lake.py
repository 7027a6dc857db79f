"""vitalflow's tables read as any other engine reads them: Delta Lake snapshots through the `deltalake`
package (delta-rs for Python), and polars. Tests never read the Parquet files of a table directory
directly: after a compaction, files replaced by the OPTIMIZE commit stay until VACUUM, and a file a
crashed writer left uncommitted is not part of the table.

A cluster keeps its tables in a local directory or under an S3 prefix ([`TableStore`]); every helper here
takes either (a plain `Path` is a directory)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tests.support.s3 import S3Server


@dataclass(frozen=True)
class TableStore:
    """Where a cluster keeps its tables (`url`, what `--data` gets), how readers reach it
    (delta-rs `storage_options`) and what a vitalflow process needs in its environment to."""

    url: str
    storage_options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    server: S3Server | None = None

    @classmethod
    def directory(cls, path: Path) -> "TableStore":
        return cls(str(path))

    @classmethod
    def on_s3(cls, server: S3Server, prefix: str) -> "TableStore":
        """Tables under s3://bucket/prefix of the test server; vitalflow reads the standard AWS variables."""
        return cls(server.url(prefix), server.delta_storage_options(), server.env(), server)

    def table_uri(self, table: str) -> str:
        return f"{self.url.rstrip('/')}/{table}"

    def read_json(self, key: str) -> dict | None:
        """A JSON object the processes keep beside the tables (`_checkpoints/etl.json`, ...); None while
        there is none (or, in a directory, while it is being replaced)."""
        if self.server is None:
            try:
                return json.loads((Path(self.url) / key).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return None
        prefix = self.url.removeprefix(f"s3://{self.server.bucket}").strip("/")
        client = s3_client(self.server)
        try:
            body = client.get_object(Bucket=self.server.bucket, Key=f"{prefix}/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def __str__(self) -> str:
        return self.url


@functools.cache
def s3_client(server: S3Server):
    """One boto3 client per server: tests poll checkpoints many times a second."""
    return server.client()


def as_store(data: Path | TableStore) -> TableStore:
    return data if isinstance(data, TableStore) else TableStore.directory(Path(data))


def delta_table(data: Path | TableStore, table: str) -> DeltaTable | None:
    """The table at its latest version (one read of its log); None when it has not been created yet."""
    store = as_store(data)
    try:
        return DeltaTable(store.table_uri(table), storage_options=store.storage_options or None)
    except TableNotFoundError:
        return None


def read_table(data: Path | TableStore, table: str, columns: list[str] | None = None) -> pa.Table | None:
    """The table's latest snapshot; None when the table has not been created yet."""
    t = delta_table(data, table)
    return None if t is None else t.to_pyarrow_table(columns=columns)


def read_polars(data: Path | TableStore, table: str, columns: list[str] | None = None):
    """The table's latest snapshot as polars reads it."""
    import polars as pl

    store = as_store(data)
    return pl.read_delta(store.table_uri(table), columns=columns, storage_options=store.storage_options or None)


def rows(data: Path | TableStore, table: str, columns: list[str] | None = None) -> list[dict]:
    t = read_table(data, table, columns)
    return [] if t is None else t.to_pylist()


def positions(data: Path | TableStore, table: str) -> list[tuple[int, int]]:
    """(source_partition, source_offset) of every row of the table's latest snapshot."""
    t = read_table(data, table, ["source_partition", "source_offset"])
    if t is None:
        return []
    return list(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))


def snapshot_files(data: Path | TableStore, table: str) -> list[str]:
    """The data files of the latest snapshot."""
    t = delta_table(data, table)
    return [] if t is None else t.file_uris()


def operations(data: Path | TableStore, table: str) -> list[str]:
    """The operation of every commit of the table, newest first (WRITE, OPTIMIZE, VACUUM START, ...)."""
    t = delta_table(data, table)
    return [] if t is None else [c.get("operation", "") for c in t.history()]
