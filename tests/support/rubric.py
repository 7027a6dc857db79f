"""The six-parameter labelling rubric of docs/clinical-rubric.md, written independently of the Rust
code so that the end-to-end test checks the pipeline against the published bands, not against itself.

Each band table lists (upper bound inclusive, points); values are rounded first (temperature to one
decimal, the rest to whole numbers), as the rubric prescribes.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

BANDS = {
    "heart_rate": [(40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (math.inf, 3)],
    "systolic_bp": [(90, 3), (100, 2), (110, 1), (219, 0), (math.inf, 3)],
    "diastolic_bp": [(49, 2), (89, 0), (119, 1), (math.inf, 3)],
    "spo2": [(91, 3), (93, 2), (95, 1), (math.inf, 0)],
    "temperature": [(35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (math.inf, 2)],
    "glucose": [(53, 3), (69, 2), (180, 0), (250, 1), (399, 2), (math.inf, 3)],
}

# How far from a band edge a value must be for a reading to count as "clear": more than the
# simulator's sensor noise, so the true state and the measurement share a band.
CLEAR_MARGIN = {"heart_rate": 6, "systolic_bp": 6, "diastolic_bp": 5, "spo2": 1.0, "temperature": 0.25, "glucose": 10}


NEWS2_ONLY_BANDS = {"respiratory_rate": [(8, 3), (11, 1), (20, 0), (24, 2), (math.inf, 3)]}


def _half_up(x: float) -> int:
    """Rounds the exact binary value half away from zero (Python's round() rounds half to even)."""
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _rounded(name: str, value: float) -> float:
    return _half_up(value * 10) / 10 if name == "temperature" else float(_half_up(value))


def points(name: str, value: float) -> int:
    v = _rounded(name, value)
    for upper, pts in {**BANDS, **NEWS2_ONLY_BANDS}[name]:
        if v <= upper:
            return pts
    raise AssertionError("unreachable")


def rubric_score(row: dict) -> int:
    return sum(points(n, row[n]) for n in BANDS)


def spo2_scale2_points(spo2: float, on_oxygen: bool) -> int:
    """NEWS2 SpO2 scale 2 (RCP 2017 chart 1): 88-92 scores 0, and so does 93 or more on air."""
    v = _half_up(spo2)
    for upper, pts in [(83, 3), (85, 2), (87, 1), (92, 0)]:
        if v <= upper:
            return pts
    if not on_oxygen:
        return 0
    return 1 if v <= 94 else 2 if v <= 96 else 3


def news2_score(row: dict) -> int | None:
    """NEWS2 aggregate; None when an input is missing. SpO2 on scale 2 when the row's spo2_scale is 2."""
    names = ("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "temperature")
    if any(row[n] is None for n in names) or row["on_oxygen"] is None or row["consciousness"] is None:
        return None
    if row.get("spo2_scale") == 2:
        score = sum(points(n, row[n]) for n in names if n != "spo2") + spo2_scale2_points(row["spo2"], row["on_oxygen"])
    else:
        score = sum(points(n, row[n]) for n in names)
    return score + (2 if row["on_oxygen"] else 0) + (0 if row["consciousness"] == "A" else 3)


def label(row: dict) -> str:
    pts = [points(n, row[n]) for n in BANDS]
    total = sum(pts)
    if total >= 7:
        return "High"
    if total >= 5 or 3 in pts:
        return "Medium"
    return "Low"


def is_clear(row: dict) -> bool:
    """Every value far from every band edge, and the reading plainly normal (0) or plainly critical (≥ 9)."""
    for name, bands in BANDS.items():
        edges = [upper + (0.05 if name == "temperature" else 0.5) for upper, _ in bands if upper != math.inf]
        if any(abs(row[name] - e) < CLEAR_MARGIN[name] for e in edges):
            return False
    total = sum(points(n, row[n]) for n in BANDS)
    return total == 0 or total >= 9
