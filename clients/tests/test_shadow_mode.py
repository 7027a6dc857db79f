"""Shadow mode: `vitalflow evaluate --history FILE --events FILE` on a hospital's own recorded readings
and events, as a data team runs it before go-live.

The history is built here as a hospital would export it (Parquet with a UTC timestamp column, or CSV
with text times): 30 patients read hourly for two days; five of them deteriorate over the six hours
before a recorded event (a rapid-response call), the others stay well. Every score must see the five:
they are the only patients whose vitals leave the normal bands.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.cluster import required_env

START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
PATIENTS = 30
HOURS = 48
DETERIORATING = {"P03": 20, "P08": 30, "P12": 12, "P21": 40, "P27": 25}  # patient: hour of the event


def _history() -> tuple[pa.Table, list[tuple[str, dt.datetime]]]:
    rows = []
    for p in range(PATIENTS):
        patient = f"P{p:02d}"
        event_hour = DETERIORATING.get(patient)
        for hour in range(HOURS):
            # Hours into the six before the event: vitals worsen step by step; after it, treated and well.
            worse = 0 if event_hour is None or not 0 <= event_hour - hour < 6 else 6 - (event_hour - hour)
            rows.append({
                "patient_id": patient,
                "event_time": START + dt.timedelta(hours=hour, minutes=p),
                "heart_rate": 72.0 + 2 * (p % 5) + 9 * worse,
                "systolic_bp": 124.0 - 6 * worse,
                "diastolic_bp": 78.0 - 3 * worse,
                "spo2": 98.0 - 1.5 * worse,
                "temperature": 36.9 + 0.3 * worse,
                "glucose": 105.0,
                "respiratory_rate": 15.0 + 2.5 * worse,
                "on_oxygen": worse >= 4,
                "consciousness": "A",
            })
    events = [(patient, START + dt.timedelta(hours=hour, minutes=int(patient[1:])))
              for patient, hour in DETERIORATING.items()]
    return pa.Table.from_pylist(rows), events


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([required_env("VITALFLOW_BIN"), "evaluate", *args], capture_output=True, text=True, timeout=300)


def test_shadow_mode_on_a_parquet_history_with_a_csv_of_events(tmp_path: Path):
    table, events = _history()
    history = tmp_path / "vitals.parquet"
    pq.write_table(table, history)
    events_csv = tmp_path / "events.csv"
    # One event given twice and one of a patient the history does not have: the first is one event,
    # the second unobserved (no score could alert for it).
    lines = [f"{p},{t.isoformat()}" for p, t in events] + [f"{events[0][0]},{events[0][1].isoformat()}", "P99,2026-11-01T05:00:00Z"]
    events_csv.write_text("patient_id,event_time,kind\n" + "".join(f"{line},rapid response\n" for line in lines))
    html = tmp_path / "report.html"

    done = _evaluate("--history", str(history), "--events", str(events_csv), "--json", "--resamples", "50",
                     "--html", str(html))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    ward = report["ward"]
    assert (ward["patients"], ward["readings"], ward["episodes"]) == (PATIENTS, PATIENTS * HOURS, len(DETERIORATING))
    source = ward["source"]
    assert (source["kind"], source["events_given"], source["events_unobserved"]) == ("recorded", 6, 1)
    # Positive readings: those in the six hours before an event, seven per event (both ends included).
    assert ward["truly_high_readings"] == 7 * len(DETERIORATING)
    assert abs(ward["patient_days"] - PATIENTS * 2) < 1e-6
    # NEWS2 is 0 on every reading but the deteriorating ones from two hours into their six: it ranks five
    # of each event's seven positive readings above every negative and ties two, (5 + 2 / 2) / 7.
    assert abs(report["auroc"]["news2"] - 6 / 7) < 1e-9, report["auroc"]
    assert report["auroc"]["model"] > 0.8, report["auroc"]
    # At four alerts per 35 patients per day (about seven on this ward) NEWS2 and the model alert once
    # for each deteriorating patient, before or at the event, and for no one else.
    four = next(m for m in report["matched"] if m["alerts_per_35_per_day"] == 4)
    for score in ("model", "news2"):
        figures = four[score]
        assert (figures["alerts"], figures["sensitivity"], figures["ppv"]) == (len(DETERIORATING), 1.0, 1.0), (score, figures)
        assert figures["median_lead_min"] >= 0, (score, figures)
    assert "Recorded history" in html.read_text()

    # The same history as CSV with text times (what a spreadsheet export gives) reads the same.
    history_csv = tmp_path / "vitals.csv"
    table.set_column(1, "event_time", pa.array([t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in table.column("event_time").to_pylist()])) \
        .to_pandas().to_csv(history_csv, index=False)
    again = _evaluate("--history", str(history_csv), "--events", str(events_csv), "--json", "--resamples", "50")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["auroc"] == report["auroc"]


def test_shadow_mode_refuses_unusable_input_by_name(tmp_path: Path):
    table, _ = _history()
    history = tmp_path / "vitals.parquet"
    pq.write_table(table, history)
    no_patient = tmp_path / "events.csv"
    no_patient.write_text("mrn,event_time\nP03,2026-11-01T20:00:00Z\n")
    cases = [
        (["--history", str(history), "--events", str(no_patient)], "no patient_id column"),
        (["--history", str(tmp_path / "missing.parquet"), "--events", str(no_patient)], "no such file"),
        (["--history", str(history)], "--events"),
        (["--history", str(history), "--events", str(no_patient), "--patients", "10"], "--patients"),
    ]
    no_time = tmp_path / "no-time.parquet"
    pq.write_table(table.drop_columns(["event_time"]), no_time)
    good_events = tmp_path / "good.csv"
    good_events.write_text("patient_id,event_time\nP03,2026-11-01T20:00:00Z\n")
    cases.append((["--history", str(no_time), "--events", str(good_events)], "no time column (event_time or timestamp)"))
    for args, words in cases:
        done = _evaluate(*args)
        assert done.returncode != 0, args
        assert words in done.stderr, (args, done.stderr)
        assert "panicked" not in done.stderr, done.stderr
