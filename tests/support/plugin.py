"""The fixtures both suites use, loaded by tests/system/conftest.py and clients/tests/conftest.py."""

from __future__ import annotations

import functools
from typing import Iterator

import pytest

from tests.support.cluster import new_cluster
from tests.support.lake import TableStore, as_store
from tests.support.pipeline import start_pipeline
from tests.support.s3 import S3Server, s3_connection


@pytest.fixture
def cluster(tmp_path, request):
    """vitalflow processes for one test, on the suite's Kafka; logs printed if the test fails, all stopped after."""
    c = new_cluster(tmp_path)
    yield c
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(c.logs())
    c.stop_all()


@pytest.fixture
def pipeline(cluster):
    """`pipeline(readings, patients=..., seed=..., ...)`: start_pipeline on this test's cluster."""
    return functools.partial(start_pipeline, cluster)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """The S3-compatible server (deploy/s3/s3.sh): the test script's, or one started for this session."""
    yield from s3_connection(tmp_path_factory.mktemp("s3"))


@pytest.fixture(params=["file", "s3"])
def storage(request, cluster) -> TableStore:
    """Runs the test twice: the cluster's tables in a local directory, then under an S3 prefix of the test
    server (`s3_server`). Request it before starting any process."""
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        cluster.data = TableStore.on_s3(server, f"clusters/{cluster.topic}")
    return as_store(cluster.data)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
