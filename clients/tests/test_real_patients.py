"""The shipped model on real patients' vitals: WHAS500 (the Worcester Heart Attack Study's 500
admissions, as scikit-survival ships them) scored with `vitalflow predict --trend`.

The model never saw real patients: it is trained on the simulator's ward. WHAS500 records each
admission's heart rate and systolic and diastolic blood pressure, and whether the patient died during
follow-up; everything else the model takes is missing, as the ETL passes a vital the monitor did not
send, and the trees route it. A model that learnt something clinical must order these patients by
outcome: the share who died rises from the Low to the higher predictions. (Most admissions are called
Low: their heart rate and blood pressure are mostly in the normal bands; the deaths of follow-up are
driven by age and comorbidity, which the model does not see.)
"""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

from sksurv.datasets import load_whas500

from tests.support.cluster import required_env

# Largest chance allowed that the deaths among the patients called Medium or High are as many as seen if
# those patients died no more often than the Low ones (one-sided binomial test).
MAX_P_VALUE = 0.01


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


def _at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_the_share_of_deaths_rises_from_low_to_high_predictions(tmp_path):
    scored = _scored(tmp_path)
    # Every admission is scored, though most of the model's inputs are missing.
    assert all(risk in ("Low", "Medium", "High") for risk, _ in scored), {r for r, _ in scored}
    low = [died for risk, died in scored if risk == "Low"]
    raised = [died for risk, died in scored if risk != "Low"]
    assert low and raised, f"{len(low)} Low and {len(raised)} Medium or High"
    low_rate, raised_rate = sum(low) / len(low), sum(raised) / len(raised)
    # Medium or High die more often than Low, by more than chance would give.
    assert raised_rate > low_rate, (low_rate, raised_rate)
    p_value = _at_least(sum(raised), len(raised), low_rate)
    assert p_value < MAX_P_VALUE, (
        f"{sum(raised)} of {len(raised)} Medium or High died against {low_rate:.2f} of the Low: p = {p_value:.3f}"
    )
    # Within the raised, High dies no less often than Medium.
    medium = [died for risk, died in scored if risk == "Medium"]
    high = [died for risk, died in scored if risk == "High"]
    if medium and high:
        assert sum(high) / len(high) >= sum(medium) / len(medium)
