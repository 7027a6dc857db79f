"""Fixtures from tests/support (`cluster`, `pipeline`); the repository root is on sys.path (pytest.ini)."""

from tests.support.plugin import cluster, pipeline, pytest_runtest_makereport  # noqa: F401
