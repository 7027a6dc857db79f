"""Helpers shared by tests/system and clients/tests: the process harness (`cluster`), a pipeline started
with N readings (`pipeline`, `start_pipeline`), one `wait_until`, the clinical rubric and a JSON HTTP call.
Each suite's conftest.py loads `tests.support.plugin` for the fixtures."""
