"""The shipped model on real patients' vitals: WHAS500 (the Worcester Heart Attack Study's 500
admissions, as scikit-survival ships them) scored with `vitalflow predict --trend`.

The model never saw real patients: it is trained on the simulator's ward. WHAS500 records each
admission's heart rate and systolic and diastolic blood pressure, and whether the patient died during
follow-up; everything else the model takes is missing, as the ETL passes a vital the monitor did not
send, and the trees route it. A model that learnt something clinical must order these patients by
outcome: the share who died rises from the Low to the High predictions.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from sksurv.datasets import load_whas500

from tests.support.cluster import required_env

# Fewest patients a risk level must have for its death rate to count in the comparison.
MIN_PATIENTS = 20


def _scored(tmp_path: Path) -> list[tuple[str, bool]]:
    x, y = load_whas500()
    rows = tmp_path / "whas500.csv"
    with rows.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["heart_rate", "systolic_bp", "diastolic_bp"])
        out.writerows(zip(x["hr"], x["sysbp"], x["diasbp"]))
    scores = tmp_path / "scores.csv"
    done = subprocess.run(
        [required_env("VITALFLOW_BIN"), "predict", "--trend", "--input", str(rows), "--output", str(scores)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with scores.open() as f:
        risks = [row["risk"] for row in csv.DictReader(f)]
    died = [bool(event) for event, _ in y]
    assert len(risks) == len(died) == 500
    return list(zip(risks, died))


def test_the_share_of_deaths_rises_from_low_to_high_predictions(tmp_path):
    scored = _scored(tmp_path)
    # Every admission is scored, though most of the model's inputs are missing.
    assert all(risk in ("Low", "Medium", "High") for risk, _ in scored), {r for r, _ in scored}
    rates = {}
    for level in ("Low", "Medium", "High"):
        outcomes = [died for risk, died in scored if risk == level]
        if len(outcomes) >= MIN_PATIENTS:
            rates[level] = sum(outcomes) / len(outcomes)
    counts = {level: sum(1 for risk, _ in scored if risk == level) for level in ("Low", "Medium", "High")}
    assert len(rates) >= 2, f"too few levels with {MIN_PATIENTS}+ patients to compare: {counts}"
    ordered = list(rates.values())
    assert ordered == sorted(ordered) and ordered[0] < ordered[-1], f"death rate by level {rates}, patients {counts}"
