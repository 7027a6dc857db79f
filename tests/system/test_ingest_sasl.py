"""Kafka over TLS with SASL: the test script's broker has a SASL_SSL listener (its own CA, SCRAM-SHA-256
and PLAIN for user "vitalflow"; see deploy/kafka/kafka.sh). Records produced and landed through it
arrive exactly once; a wrong password stops ingest with a clear error instead of a silent wait."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.system.test_ingest_exactly_once import acknowledged, assert_exactly_once, ingest, landed_positions, simulate, wait_all_landed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sasl() -> dict:
    if not os.environ.get("VITALFLOW_KAFKA_DIR"):
        pytest.skip("needs the test script's broker (VITALFLOW_KAFKA_DIR) for its SASL_SSL listener")
    out = subprocess.run([str(ROOT / "deploy" / "kafka" / "kafka.sh"), "sasl"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def sasl_env(sasl: dict, mechanism: str, password: str | None = None) -> dict[str, str]:
    return {
        "VITALFLOW__KAFKA__SECURITY_PROTOCOL": "sasl_ssl",
        "VITALFLOW__KAFKA__SASL_MECHANISM": mechanism,
        "VITALFLOW__KAFKA__SASL_USERNAME": sasl["username"],
        "VITALFLOW__KAFKA__SASL_PASSWORD": password or sasl["password"],
        "VITALFLOW__KAFKA__SSL_CA_LOCATION": sasl["ca"],
    }


def test_records_produced_and_landed_over_sasl_ssl_land_exactly_once(cluster, sasl):
    plain = cluster.kafka
    cluster.kafka = sasl["bootstrap"]  # every vitalflow process below talks to the SASL_SSL listener only
    cluster.env.update(sasl_env(sasl, "PLAIN"))
    produced = acknowledged(simulate(cluster, 5000))
    cluster.env.update(sasl_env(sasl, "SCRAM-SHA-256"))
    proc = ingest(cluster, "ingest", f"{cluster.topic}-ingest")
    wait_all_landed(cluster, produced, timeout=120)
    assert proc.proc.poll() is None, proc.tail()
    proc.stop()
    cluster.kafka = plain  # the check reads the topic's offsets through the plain listener
    assert_exactly_once(cluster, produced)
    assert "SASL authentication" not in proc.log_path.read_text()


def test_a_wrong_password_is_a_clear_error_not_a_hang(cluster, sasl):
    cluster.kafka = sasl["bootstrap"]
    cluster.env.update(sasl_env(sasl, "SCRAM-SHA-256", password="not-the-password"))
    proc = ingest(cluster, "ingest", f"{cluster.topic}-ingest")
    started = time.monotonic()
    code = proc.wait_exit(60)
    log = proc.log_path.read_text()
    assert code != 0, log
    assert "refused the connection" in log and "Authentication failed" in log, log[-3000:]
    assert time.monotonic() - started < 60
    assert landed_positions(cluster.data, "vitals_raw") == []
    # `vitalflow config` shows the settings but never the password.
    shown = subprocess.run(cluster.base_args() + ["config"], env=cluster.env, check=True, capture_output=True, text=True).stdout
    assert 'security_protocol = "sasl_ssl"' in shown and "not-the-password" not in shown and "<redacted>" in shown, shown
