"""The fixtures both suites use, loaded by tests/system/conftest.py and clients/tests/conftest.py."""

from __future__ import annotations

import functools

import pytest

from tests.support.cluster import new_cluster
from tests.support.pipeline import start_pipeline


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
