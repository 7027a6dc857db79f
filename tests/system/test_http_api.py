"""The HTTP API of `vitalflow scheduler`: the seed's /predict_batch contract, behind the same sign-in as Flight SQL."""

from __future__ import annotations

import base64

from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS
from tests.support.http_json import http

RECORD = {"heart_rate": 88, "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


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


def test_http_api_never_answers_5xx_to_what_its_openapi_document_allows(cluster, tmp_path):
    """schemathesis generates requests from /openapi.json (valid and invalid bodies, auth on)."""
    import subprocess
    import sys
    from pathlib import Path

    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl")
    user, (password, _) = next(iter(FLIGHT_SQL_USERS.items()))
    authorization = basic(user, password)["Authorization"]
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(cli), "run", f"http://{addrs['http']}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
         "--max-examples", "60", "--seed", "7", "--header", f"Authorization: {authorization}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_repeated_wrong_passwords_make_the_name_wait_and_tokens_keep_working(cluster):
    """200 wrong passwords from one client: after five, each is refused unchecked; the right password waits too, a
    token in use keeps working, the server keeps answering, and /metrics counts both."""
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl")
    base = f"http://{addrs['http']}"
    user, (password, _) = next(iter(FLIGHT_SQL_USERS.items()))
    waited = 0
    for i in range(200):
        status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], basic(user, f"guess-{i}"))
        assert status == 401, answer
        waited += "too many failed sign-ins" in answer["detail"][0]["msg"]
    assert waited >= 190, f"{waited} of 200 waited"

    status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], basic(user, password))
    assert status == 401 and "try again in" in answer["detail"][0]["msg"], answer

    _, token = FLIGHT_SQL_TOKEN
    status, answer, _ = http("POST", f"{base}/predict_batch", [RECORD], {"Authorization": f"Bearer {token}"})
    assert status == 200, answer

    import urllib.request
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        metrics = dict(
            line.rsplit(" ", 1) for line in response.read().decode().splitlines() if line and not line.startswith("#")
        )
    assert int(metrics["vitalflow_sign_in_failures_total"]) <= 10, metrics
    assert int(metrics["vitalflow_sign_in_backoff_refusals_total"]) >= 191, metrics


def test_bodies_that_are_not_json_too_big_or_ambiguous_get_a_json_4xx_naming_the_problem(cluster):
    """A form post (what any web page can send to localhost), a field named twice, a body over the limit."""
    import json
    import urllib.error
    import urllib.request

    env = {"VITALFLOW__HTTP__MAX_BATCH_RECORDS": "100"}
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl", env=env)
    url = f"http://{addrs['http']}/predict_batch"
    _, token = FLIGHT_SQL_TOKEN

    def post(body: bytes, content_type: str) -> tuple[int, dict]:
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            assert error.headers["Content-Type"] == "application/json", error.headers
            return error.code, json.loads(error.read())

    record = json.dumps([RECORD]).encode()
    status, answer = post(record, "text/plain")
    assert status == 415 and answer["detail"][0]["loc"] == ["header", "content-type"], answer
    status, answer = post(record, "application/x-www-form-urlencoded")
    assert status == 415, answer

    twice = json.dumps([RECORD])[:-2].encode() + b', "spo2": 75}]'
    status, answer = post(twice, "application/json")
    assert status == 422 and "appears twice" in answer["detail"][0]["msg"], answer

    # 100 records pretty-printed are within the limit; a body over 100 × 1 KiB is refused before it is parsed.
    status, answer = post(json.dumps([RECORD] * 100, indent=8).encode(), "application/json")
    assert status == 200 and len(answer["predictions"]) == 100, answer
    status, answer = post(b"[" + b" " * (200 * 1024) + b"]", "application/json")
    assert status == 413 and answer["detail"][0]["type"] == "too_long", answer
