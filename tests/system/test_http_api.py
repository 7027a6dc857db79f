"""The HTTP API of `vitalflow scheduler`: the seed's /predict_batch contract, behind the same sign-in as Flight SQL.
What attacks it (schemathesis, hand-made bodies, password guessing) is in test_attack_suite.py."""

from __future__ import annotations

from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS
from tests.support.http_json import RECORD, basic, http


def test_predict_batch_needs_credentials_and_names_bad_fields(cluster):
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl")
    base = f"http://{addrs['http']}"

    status, health, _ = http("GET", f"{base}/healthz")
    assert status == 200 and health["status"] == "ok", health

    status, answer, headers = http("POST", f"{base}/predict_batch", [RECORD])
    assert status == 401, answer
    assert "Basic" in headers.get("www-authenticate", headers.get("WWW-Authenticate", "")), headers
    assert answer["detail"][0]["loc"] == ["header", "authorization"], answer

    user, (password, _) = next(iter(FLIGHT_SQL_USERS.items()))
    status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], basic(user, "not-the-password"))
    assert status == 401, answer

    status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], basic(user, password))
    assert status == 200, answer
    assert answer["predictions"][0]["risk"] in {"High", "Medium", "Low"}

    # Prometheus text, open like /healthz: the answers so far are counted.
    import urllib.request
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'vitalflow_http_predict_batch_responses_total{status="401"} 2' in metrics, metrics
    assert 'vitalflow_http_predict_batch_responses_total{status="200"} 1' in metrics, metrics

    _, token = FLIGHT_SQL_TOKEN
    bad = [RECORD, {**RECORD, "glucose": None}, {**RECORD, "temperature": 95.2}]
    status, answer, _ = http("POST", f"{base}/predict_batch", {"records": bad}, {"Authorization": f"Bearer {token}"})
    assert status == 422, answer
    assert [d["loc"] for d in answer["detail"]] == [["body", 1, "glucose"], ["body", 2, "temperature"]], answer
    assert "outside" in answer["detail"][1]["msg"], answer


def test_predict_batch_explains_each_prediction_when_asked(cluster):
    """?explain=true: base + contributions (one per model input, by name) = P(High); a bad value is a 400 naming it."""
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl")
    base = f"http://{addrs['http']}"
    user, (password, _) = next(iter(FLIGHT_SQL_USERS.items()))
    sick = {"heart_rate": 126, "systolic_bp": 88, "diastolic_bp": 45, "spo2": 85, "temperature": 38.2, "glucose": 60}
    status, answer, _ = http("POST", f"{base}/predict_batch?explain=true", [RECORD, sick], basic(user, password))
    assert status == 200, answer
    inputs = ["heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose", "rubric_points"]
    for prediction in answer["predictions"]:
        why = prediction["explanation"]
        assert sorted(why["contributions"]) == sorted(inputs), why
        total = why["base"] + sum(why["contributions"].values())
        # The probabilities are rounded to four decimals; the contributions are not.
        assert abs(total - prediction["probabilities"]["High"]) <= 0.00005 + 1e-9, (total, prediction)
    calm, ill = (p["explanation"]["contributions"] for p in answer["predictions"])
    assert answer["predictions"][1]["risk"] == "High" and ill["rubric_points"] > 0 > calm["rubric_points"], answer

    status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], basic(user, password))
    assert status == 200 and "explanation" not in answer["predictions"][0], answer
    status, answer, _ = http("POST", f"{base}/predict_batch?explain=yes", [RECORD], basic(user, password))
    assert status == 400 and answer["detail"][0]["loc"] == ["query", "explain"], answer
