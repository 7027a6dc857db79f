"""A JSON-over-HTTP call for the HTTP API tests (standard library only), and what they send."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request


def http(method: str, url: str, body: object | None = None, headers: dict[str, str] | None = None) -> tuple[int, object, dict]:
    """Status, decoded JSON body and headers; 4xx/5xx are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


# One reading as /predict_batch takes it.
RECORD = {"heart_rate": 88, "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104}


def basic(user: str, password: str) -> dict[str, str]:
    """The `Authorization: Basic` header of `user:password`."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
