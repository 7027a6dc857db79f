"""Alert delivery on one scheduler and two executors with the real Kafka: every committed risk_alerts row
reaches the Kafka topic and a webhook (a small HTTP server here) at least once, across a kill -9 of the
scheduler mid-stream and while the webhook answers 500; repeats only for batches in flight at the kill."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import Consumer

from tests.support.wait import wait_until
from tests.system.test_etl_faults import committed_batches, read_table, start_cluster, topic_records, wait_all_processed


class Webhook:
    """An HTTP receiver on 127.0.0.1:0 that records every alert it accepts; refuses with 500 while `refusing`."""

    def __init__(self):
        self.alerts: list[dict] = []
        self.refused = 0
        self.refusing = False
        self.content_types: set[str] = set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.content_types.add(self.headers.get("Content-Type", ""))
                if hook.refusing:
                    hook.refused += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                hook.alerts.extend(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def topic_alerts(kafka: str, topic: str, expected: set[str], timeout: float) -> list[tuple[str, dict]]:
    """(key, message) of every alert on `topic`, read until `expected` ids are all there or `timeout`."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"{topic}-check", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not expected <= {m["alert_id"] for _, m in got}:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.key().decode(), json.loads(msg.value())))
    finally:
        consumer.close()
    return got


def metric(http_addr: str, name: str, sink: str) -> float:
    text = urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10).read().decode()
    prefix = f'{name}{{sink="{sink}"}} '
    return next((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def delivered_through(cluster, sink: str) -> int:
    return json.loads((cluster.data / "_checkpoints" / f"alerts-{sink}.json").read_text())["last_batch_id"]


def test_every_committed_alert_reaches_kafka_and_webhook_across_kill_and_outage(cluster):
    topic = f"risk-alerts-{uuid.uuid4().hex[:10]}"
    hook = Webhook()
    cluster.env.update(
        VITALFLOW__ALERTS__KAFKA_TOPIC=topic,
        VITALFLOW__ALERTS__WEBHOOK_URL=hook.url,
        VITALFLOW__ALERTS__MAX_BACKOFF_SECONDS="1",
    )
    try:
        sim = cluster.start("simulate", "simulate", "--rate", "40", "--patients", "30", "--seed", "31", "--episode-rate", "3")
        start_cluster(cluster, "-0")
        cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", env={"VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "50"})

        # Mid-stream, as soon as alerts flow, kill -9 the scheduler (with its ETL driver and delivery).
        wait_until(lambda: len(hook.alerts) > 0, 120, "a first alert on the webhook", interval=0.2, details=cluster.logs)
        cluster.kill("scheduler", "executor")
        resumed_from = {sink: delivered_through(cluster, sink) for sink in ("kafka", "webhook")}
        committed_at_kill = committed_batches(cluster)

        # Restarted, with the webhook down: delivery retries while the ETL goes on committing.
        hook.refusing = True
        addrs = start_cluster(cluster, "-1")
        # Counted per sink: the alert_event delivery's requests are refused too.
        wait_until(lambda: metric(addrs["http"], "vitalflow_alerts_delivery_failures_total", "webhook") >= 2, 120,
                   "two refused webhook requests of risk_alerts", interval=0.2, details=cluster.logs)
        refused_at = committed_batches(cluster)
        wait_until(lambda: committed_batches(cluster) > refused_at, 120, "an ETL commit while the webhook is down", interval=0.2, details=cluster.logs)
        failures = metric(addrs["http"], "vitalflow_alerts_delivery_failures_total", "webhook")
        assert failures >= 2, failures
        assert delivered_through(cluster, "webhook") < committed_batches(cluster)
        hook.refusing = False

        time.sleep(2)
        sim.stop(signal.SIGTERM)
        total = topic_records(cluster.kafka, cluster.topic)
        wait_all_processed(cluster, total)
        final_batch = committed_batches(cluster)
        assert final_batch > committed_at_kill

        table = {a["alert_id"]: a for a in read_table(cluster, "risk_alerts", ["alert_id", "patient_id", "risk", "etl_batch_id"])}
        assert len(table) > 0, "the simulated ward raised no alert"
        wait_until(lambda: set(table) <= {a["alert_id"] for a in hook.alerts}, 60, "every alert on the webhook", interval=0.2, details=cluster.logs)
        wait_until(lambda: delivered_through(cluster, "kafka") >= final_batch, 60, "kafka delivery of the last batch", interval=0.2, details=cluster.logs)
        on_topic = topic_alerts(cluster.kafka, topic, set(table), timeout=60)

        for sink, received in (("webhook", hook.alerts), ("kafka", [m for _, m in on_topic])):
            # The alerts' lifecycle shares the sinks as `alert_event` messages (tested in test_alert_lifecycle).
            messages = [m for m in received if m.get("type") != "alert_event"]
            ids = Counter(m["alert_id"] for m in messages)
            assert set(ids) == set(table), (
                f"{sink}: {len(set(table) - set(ids))} alerts missing, {len(set(ids) - set(table))} not in risk_alerts"
            )
            # Repeats only of batches in flight at the kill (sent, not yet recorded in the sink's checkpoint).
            repeated = {i for i, n in ids.items() if n > 1}
            assert all(table[i]["etl_batch_id"] > resumed_from[sink] and ids[i] == 2 for i in repeated), (sink, repeated)
            for m in messages:
                row = table[m["alert_id"]]
                assert (m["patient_id"], m["risk"], m["etl_batch_id"]) == (row["patient_id"], row["risk"], row["etl_batch_id"])
                assert m["event_time"].endswith("Z") and "model_version" in m and "previous_risk" in m
        assert all(key == m["patient_id"] for key, m in on_topic)
        assert hook.content_types == {"application/json"}
        assert metric(addrs["http"], "vitalflow_alerts_delivered_total", "webhook") > 0
        print(f"alert delivery: {len(table)} alerts, {final_batch} batches, {failures:.0f} webhook failures retried")
    finally:
        hook.close()
