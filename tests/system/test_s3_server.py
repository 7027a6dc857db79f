"""Preflight of the S3-compatible server vitalflow's Delta Lake tables live on in tests (deploy/s3/s3.sh).

Signed requests (boto3) check the object API the tables need, and above all conditional writes: a PUT with
`If-None-Match: *` must be refused when the key exists, also when many race for one key. That is what makes
Delta commits on S3 safe without DynamoDB: two writers trying the same log version cannot both win. Then
delta-rs itself (the `deltalake` Python binding) creates, appends to and reads a table on the server, and
two processes appending at once lose no commit.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.support.s3 import S3Server

# How many writers race for one key (conditional PUT) and how many appends each Delta writer makes.
RACERS = 8
APPENDS_PER_WRITER = 5


def fresh_prefix(name: str) -> str:
    return f"preflight/{name}-{uuid.uuid4().hex[:12]}"


def error_status(error: ClientError) -> tuple[int, str]:
    return error.response["ResponseMetadata"]["HTTPStatusCode"], error.response["Error"]["Code"]


def body(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_put_get_list(s3_server: S3Server):
    client, bucket, prefix = s3_server.client(), s3_server.bucket, fresh_prefix("objects")
    client.put_object(Bucket=bucket, Key=f"{prefix}/a.bin", Body=b"first")
    client.put_object(Bucket=bucket, Key=f"{prefix}/b/c.bin", Body=b"second" * 1000)

    assert body(client, bucket, f"{prefix}/a.bin") == b"first"
    assert body(client, bucket, f"{prefix}/b/c.bin") == b"second" * 1000
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [f"{prefix}/a.bin", f"{prefix}/b/c.bin"]
    assert {o["Size"] for o in listed["Contents"]} == {5, 6000}


def test_wrong_secret_is_refused(s3_server: S3Server):
    impostor = S3Server(s3_server.endpoint, s3_server.access_key, "not-the-secret", s3_server.region, s3_server.bucket)
    with pytest.raises(ClientError) as refused:
        impostor.client().list_objects_v2(Bucket=s3_server.bucket)
    assert error_status(refused.value)[0] == 403


def test_put_if_none_match_creates_once(s3_server: S3Server):
    client, bucket = s3_server.client(), s3_server.bucket
    key = f"{fresh_prefix('create-once')}/00000000000000000000.json"

    client.put_object(Bucket=bucket, Key=key, Body=b"winner", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key=key, Body=b"loser", IfNoneMatch="*")

    assert error_status(refused.value) == (412, "PreconditionFailed")
    assert body(client, bucket, key) == b"winner"


def test_racing_creates_of_one_key_have_one_winner(s3_server: S3Server):
    """Delta's commit race: writers put the same log version at once; exactly one may succeed."""
    bucket, key = s3_server.bucket, f"{fresh_prefix('race')}/00000000000000000001.json"
    clients = [s3_server.client() for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def racer(i: int) -> str:
        start.wait()
        try:
            clients[i].put_object(Bucket=bucket, Key=key, Body=f"racer {i}".encode(), IfNoneMatch="*")
            return "won"
        except ClientError as error:
            # 412 PreconditionFailed; AWS answers 409 ConditionalRequestConflict to a write racing another.
            status, code = error_status(error)
            assert (status, code) in {(412, "PreconditionFailed"), (409, "ConditionalRequestConflict")}, code
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        outcomes = list(pool.map(racer, range(RACERS)))

    assert outcomes.count("won") == 1, outcomes
    winner = outcomes.index("won")
    assert body(clients[0], bucket, key) == f"racer {winner}".encode()


def test_put_if_match_replaces_only_the_version_read(s3_server: S3Server):
    client, bucket = s3_server.client(), s3_server.bucket
    key = f"{fresh_prefix('if-match')}/_last_checkpoint"
    first = client.put_object(Bucket=bucket, Key=key, Body=b"v1")["ETag"]

    second = client.put_object(Bucket=bucket, Key=key, Body=b"v2", IfMatch=first)["ETag"]
    with pytest.raises(ClientError) as stale:
        client.put_object(Bucket=bucket, Key=key, Body=b"v3", IfMatch=first)

    assert second != first
    assert error_status(stale.value) == (412, "PreconditionFailed")
    assert body(client, bucket, key) == b"v2"
    with pytest.raises(ClientError) as missing:
        client.put_object(Bucket=bucket, Key=f"{key}.absent", Body=b"x", IfMatch=first)
    # AWS answers 404 NoSuchKey to If-Match on a missing key; a 412 refuses the write just as well.
    assert error_status(missing.value)[0] in {404, 412}


def rows(table) -> list[tuple[int, str]]:
    data = table.to_pydict()
    return sorted(zip(data["id"], data["writer"]))


def test_delta_table_create_append_read(s3_server: S3Server):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    url, options = s3_server.url(fresh_prefix("table")), s3_server.delta_storage_options()
    write_deltalake(url, pa.table({"id": [1, 2], "writer": ["create", "create"]}), storage_options=options)
    write_deltalake(url, pa.table({"id": [3], "writer": ["append"]}), mode="append", storage_options=options)

    table = DeltaTable(url, storage_options=options)
    assert table.version() == 1
    assert rows(table.to_pyarrow_table()) == [(1, "create"), (2, "create"), (3, "append")]
    log = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=url.split("/", 3)[3] + "/_delta_log/")
    assert [o["Key"].rsplit("/", 1)[1] for o in log["Contents"]] == [
        "00000000000000000000.json",
        "00000000000000000001.json",
    ]


def append_rows(url: str, options: dict[str, str], writer: str, start_at: float) -> None:
    """One writer process: waits for the common start time, then appends APPENDS_PER_WRITER single rows."""
    import pyarrow as pa
    from deltalake import write_deltalake

    time.sleep(max(0.0, start_at - time.time()))
    for i in range(APPENDS_PER_WRITER):
        write_deltalake(url, pa.table({"id": [i], "writer": [writer]}), mode="append", storage_options=options)


def test_concurrent_delta_appends_lose_no_commit(s3_server: S3Server):
    """Two processes append at once: each commit that returned is in the table (conflicts were retried)."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    url, options = s3_server.url(fresh_prefix("concurrent")), s3_server.delta_storage_options()
    write_deltalake(url, pa.table({"id": [-1], "writer": ["create"]}), storage_options=options)

    start_at = time.time() + 3  # both processes have imported deltalake by then
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        writers = [pool.submit(append_rows, url, options, name, start_at) for name in ("a", "b")]
        for writer in writers:
            writer.result(timeout=180)

    table = DeltaTable(url, storage_options=options)
    expected = [(-1, "create")] + [(i, w) for i in range(APPENDS_PER_WRITER) for w in ("a", "b")]
    assert rows(table.to_pyarrow_table()) == sorted(expected)
    assert table.version() == 2 * APPENDS_PER_WRITER
    appends = [h for h in table.history() if h.get("operationParameters", {}).get("mode") == "Append"]
    assert len(appends) == 2 * APPENDS_PER_WRITER
