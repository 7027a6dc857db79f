"""Fixtures from tests/support (`cluster`, `pipeline`, `s3_server`, `storage`); the repository root is on sys.path (pytest.ini)."""

from tests.support.plugin import cluster, pipeline, pytest_runtest_makereport, s3_server, storage  # noqa: F401
