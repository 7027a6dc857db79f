"""vitalflow ward dashboard: a Streamlit page reading vitalflow over Arrow Flight SQL (ADBC).

Started by `vitalflow up` (or by hand: `streamlit run clients/streamlit/app.py`). One file on purpose:
`up` compiles it into the binary and runs it from its cached venv.

Settings, from the environment first, else from the `[vitalflow]` table of Streamlit's secrets file
(`.streamlit/secrets.toml`: keys flight_sql, http, token, user, password):
  VITALFLOW_FLIGHT_SQL_URL  server URL (default grpc://127.0.0.1:50060; grpc+tls://host:port for TLS)
  VITALFLOW_HTTP_URL        the HTTP API, where alerts are acted on (default http://127.0.0.1:8000)
  VITALFLOW_TOKEN           a static bearer token (a service account), or
  VITALFLOW_USER / VITALFLOW_PASSWORD  a Flight SQL user.
The page reads with that account; a person acting on an alert signs in on the page with their own name
and password, sent with each action to the HTTP API, which records the action under that name.
The names every vitalflow client reads (clients/python/README.md, "Environment"); the older
VITALFLOW_FLIGHT_SQL is still read, with a deprecation warning, when VITALFLOW_FLIGHT_SQL_URL is unset.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

REFRESH_SECONDS = 5
# Patients whose newest reading is older than this are off the ward view; alerts of this window are listed.
WINDOW_MINUTES = 15
# The drill-down's history.
HISTORY_MINUTES = 60
HISTORY_ROWS = 2000
# A gap this long since the newest reading means the feed has stopped (the monitors send every few seconds).
STALE_SECONDS = 60
DEFAULT_URL = "grpc://127.0.0.1:50060"
DEFAULT_HTTP_URL = "http://127.0.0.1:8000"
# Kaiser Permanente's Advance Alert Monitor budgets about one alert per 35 patients per day.
ALERT_BUDGET = 1.0
# What a signed-in clinician may do to an alert (POST /alerts/{alert_id}/{action}); dismiss needs a reason.
ACTIONS = ("acknowledge", "escalate", "dismiss", "resolve")
ACTIVE_STATES = ("open", "acknowledged", "escalated")
# Most active alerts given action buttons (the rest are listed).
MAX_ACTIONABLE = 20
RISK_COLOURS = {"High": "#d62728", "Medium": "#ff7f0e", "Low": "#2ca02c"}
UNSCORED_COLOUR = "#7f7f7f"
RISK_ORDER = {"High": 0, "Medium": 1, "Low": 2}
VITALS = ["heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose", "respiratory_rate"]

# The 0-point band of each vital in docs/clinical-rubric.md (NEWS2 2017 Chart 1; ACC/AHA diastolic;
# ADA glucose), inclusive, on the rubric's rounding: shaded in the drill-down as "normal".
NORMAL_BANDS = {
    "heart_rate": (51, 90),
    "systolic_bp": (111, 219),
    "diastolic_bp": (50, 89),
    "spo2": (96, 100),
    "temperature": (36.1, 38.0),
    "glucose": (70, 180),
    "respiratory_rate": (12, 20),
}
UNITS = {
    "heart_rate": "/min", "systolic_bp": "mmHg", "diastolic_bp": "mmHg", "spo2": "%",
    "temperature": "°C", "glucose": "mg/dL", "respiratory_rate": "/min",
}

# patient_latest: one row per patient, kept current by each ETL micro-batch, so this never scans history.
LATEST_SQL = f"""
SELECT patient_id, event_time, {", ".join(VITALS)}, risk, news2_score
FROM patient_latest
WHERE event_time > now() - INTERVAL '{WINDOW_MINUTES} minutes'
ORDER BY patient_id
"""

# Seconds since the newest reading, whatever its age (the ward view above hides stale patients).
FRESHNESS_SQL = "SELECT max(event_time) AS newest FROM patient_latest"

# risk_alerts: one row when a patient's risk rises to High (not one per High reading).
ALERTS_SQL = f"""
SELECT event_time, patient_id, previous_risk, news2_score, probability_high
FROM risk_alerts
WHERE event_time > now() - INTERVAL '{WINDOW_MINUTES} minutes'
ORDER BY event_time DESC
LIMIT 50
"""

# alerts: the alerts a ward acts on (after the muting rule), active ones and those closed in the last hour.
WARD_ALERTS_SQL = f"""
SELECT alert_id, patient_id, ward, kind, state, raised_at, news2_score, probability_high,
       acknowledged_by, updated_by, updated_at, reason, events
FROM alerts
WHERE state IN ('open', 'acknowledged', 'escalated') OR updated_at > now() - INTERVAL '{HISTORY_MINUTES} minutes'
ORDER BY updated_at DESC
LIMIT 100
"""

# The alert budget's figure: alerts per 35 patients per day of the readings' time.
BUDGET_SQL = "SELECT ward_alerts, alerts_per_35_patients_per_day FROM etl_progress"

# The columns the ETL's scoring model (the trend model) takes, as its model file names them.
ARGUMENTS_SQL = "SELECT trend_model_arguments() AS arguments"


def why_sql(arguments: str) -> str:
    """Why the patient's newest reading has its P(High): the trend model's base and one contribution per input."""
    return f"""
SELECT risk, probability_high, forest_probability_high AS p_high, explain_trend_risk({arguments}) AS why
FROM vitals_clean
WHERE patient_id = ? AND event_time > now() - INTERVAL '{HISTORY_MINUTES} minutes'
ORDER BY event_time DESC
LIMIT 1
"""

HISTORY_SQL = f"""
SELECT event_time, {", ".join(VITALS)}, risk, news2_score
FROM vitals_clean
WHERE patient_id = ? AND event_time > now() - INTERVAL '{HISTORY_MINUTES} minutes'
ORDER BY event_time DESC
LIMIT {HISTORY_ROWS}
"""


@dataclass(frozen=True)
class Settings:
    """Where the server is and how to sign in."""

    url: str = DEFAULT_URL
    http_url: str = DEFAULT_HTTP_URL
    token: str | None = None
    user: str | None = None
    password: str | None = None

    def db_kwargs(self) -> dict[str, str]:
        if self.token:
            from adbc_driver_flightsql import DatabaseOptions

            return {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {self.token}"}
        if self.user:
            return {"username": self.user, "password": self.password or ""}
        return {}


# Deprecated environment names, read when the current name is unset: old name → current name.
DEPRECATED_ENV = {"VITALFLOW_FLIGHT_SQL": "VITALFLOW_FLIGHT_SQL_URL"}


def _env(env: Mapping[str, str], name: str) -> str | None:
    """`name` from the environment, else its deprecated alias (logged as such)."""
    if env.get(name):
        return env[name]
    for old, new in DEPRECATED_ENV.items():
        if new == name and env.get(old):
            logging.getLogger("vitalflow.dashboard").warning("%s is deprecated: set %s instead", old, new)
            return env[old]
    return None


def load_settings(env: Mapping[str, str], file: Mapping[str, object]) -> Settings:
    """The environment wins over the secrets file's [vitalflow] table; empty values count as unset."""

    def get(env_name: str, key: str) -> str | None:
        value = _env(env, env_name) or file.get(key)
        return str(value) if value else None

    return Settings(
        url=get("VITALFLOW_FLIGHT_SQL_URL", "flight_sql") or DEFAULT_URL,
        http_url=get("VITALFLOW_HTTP_URL", "http") or DEFAULT_HTTP_URL,
        token=get("VITALFLOW_TOKEN", "token"),
        user=get("VITALFLOW_USER", "user"),
        password=get("VITALFLOW_PASSWORD", "password"),
    )


def settings() -> Settings:
    file: Mapping[str, object] = {}
    if st.secrets.load_if_toml_exists():
        file = st.secrets.get("vitalflow", {})
    return load_settings(os.environ, file)


def explain(error: BaseException, url: str) -> str:
    """One sentence a ward user can act on; never a stack trace."""
    text = str(error)
    lower = text.lower()
    if "unauthenticated" in lower or "unauthorized" in lower:
        return (f"vitalflow at {url} refused the sign-in: check VITALFLOW_TOKEN, or VITALFLOW_USER and "
                "VITALFLOW_PASSWORD.")
    if "permission" in lower:
        return f"vitalflow at {url} refused a query to this account (permission denied): ask for the reader role."
    if any(s in lower for s in ("unavailable", "connection refused", "failed to connect", "deadline", "no route", "dns")):
        return f"vitalflow is not answering at {url} (is it running? is VITALFLOW_FLIGHT_SQL_URL right?)."
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "no detail")
    return f"A query to vitalflow at {url} failed: {type(error).__name__}: {first_line[:200]}."


@st.cache_resource(show_spinner=False)
def connection(server: Settings):
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(server.url, db_kwargs=server.db_kwargs(), autocommit=True)


def query(server: Settings, sql: str, parameters: tuple | None = None) -> pd.DataFrame:
    try:
        cur = connection(server).cursor()
        try:
            cur.execute(sql, parameters)
            return cur.fetch_arrow_table().to_pandas()
        finally:
            cur.close()
    except Exception:
        # A dead connection stays dead: drop it so that the next refresh reconnects.
        connection.clear()
        raise


def seconds_since(newest: object, now: datetime) -> float | None:
    """Age of the newest reading in seconds (None when there is none); times without a zone are UTC."""
    if newest is None or pd.isna(newest):
        return None
    stamp = pd.Timestamp(newest)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return max((now - stamp.to_pydatetime()).total_seconds(), 0.0)


def risk_changes(history: pd.DataFrame) -> pd.DataFrame:
    """Rows (oldest first) where the risk differs from the previous scored reading: event_time, previous_risk, risk."""
    scored = history.dropna(subset=["risk"]).sort_values("event_time")
    previous = scored["risk"].shift()
    changed = scored[previous.notna() & (scored["risk"] != previous)]
    return pd.DataFrame({
        "event_time": changed["event_time"],
        "previous_risk": previous[changed.index],
        "risk": changed["risk"],
    }).reset_index(drop=True)


def risk_colour(risk: object) -> str:
    return RISK_COLOURS.get(risk, UNSCORED_COLOUR) if isinstance(risk, str) else UNSCORED_COLOUR


def by_urgency(latest: pd.DataFrame) -> pd.DataFrame:
    """High first, then Medium, Low, unscored; higher NEWS2 first within a level."""
    order = latest["risk"].map(RISK_ORDER).fillna(len(RISK_ORDER))
    news2 = latest["news2_score"].fillna(-1)
    return latest.assign(_o=order, _n=-news2).sort_values(["_o", "_n", "patient_id"]).drop(columns=["_o", "_n"])


def _number(value: object, digits: int = 0) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def tile_html(row: Mapping[str, object]) -> str:
    """One patient's ward tile: coloured by risk, with NEWS2 and the key vitals."""
    risk = row["risk"] if isinstance(row["risk"], str) else "Unscored"
    pid = html.escape(str(row["patient_id"]))
    return (
        f'<div class="vf-tile" data-patient="{pid}" data-risk="{html.escape(risk)}" '
        f'style="background:{risk_colour(row["risk"])};color:white;border-radius:8px;padding:8px 10px;'
        f'min-width:130px;flex:0 0 auto;font-family:sans-serif">'
        f'<div style="font-weight:700;font-size:1.1em">{pid}</div>'
        f'<div>{html.escape(risk)} · NEWS2 {_number(row["news2_score"])}</div>'
        f'<div style="font-size:0.85em">HR {_number(row["heart_rate"])} · SpO₂ {_number(row["spo2"])} · '
        f'BP {_number(row["systolic_bp"])}/{_number(row["diastolic_bp"])}</div></div>'
    )


def ward_html(latest: pd.DataFrame) -> str:
    tiles = "".join(tile_html(row) for row in by_urgency(latest).to_dict("records"))
    return f'<div class="vf-ward" style="display:flex;flex-wrap:wrap;gap:8px">{tiles}</div>'


def alerts_html(alerts: pd.DataFrame, latest: pd.DataFrame, now: datetime) -> str:
    """The high-risk alert list: one line per patient (its newest rise; a patient flapping between Medium
    and High would fill the list), newest first, with the number of rises and the patient's risk now."""
    current = dict(zip(latest["patient_id"], latest["risk"]))
    rises = alerts["patient_id"].value_counts()
    newest = alerts.sort_values("event_time", ascending=False).drop_duplicates("patient_id")
    items = []
    for row in newest.to_dict("records"):
        pid = html.escape(str(row["patient_id"]))
        was = row["previous_risk"] if isinstance(row["previous_risk"], str) else "no earlier reading"
        age = seconds_since(row["event_time"], now)
        now_risk = current.get(row["patient_id"])
        now_text = f" · now {html.escape(now_risk)}" if isinstance(now_risk, str) else ""
        count = int(rises[row["patient_id"]])
        count_text = f" · {count} rises in {WINDOW_MINUTES} min" if count > 1 else ""
        items.append(
            f'<li class="vf-alert" data-patient="{pid}" style="margin:4px 0;padding:6px 8px;'
            f'border-left:6px solid {RISK_COLOURS["High"]};background:#fff4f4;list-style:none;font-family:sans-serif">'
            f"<b>{pid}</b> rose to High from {html.escape(was)}, {_number(age)} s ago · NEWS2 "
            f"{_number(row['news2_score'])} · P(High) {_number(row['probability_high'], 2)}{now_text}{count_text}</li>"
        )
    return f'<ul class="vf-alerts" style="padding:0;margin:0">{"".join(items)}</ul>'


def _time(value: object) -> str:
    if value is None or pd.isna(value):
        return "–"
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).strftime("%H:%M:%S")


def by_state(alerts: pd.DataFrame) -> pd.DataFrame:
    """Active alerts first (open, then escalated, then acknowledged), newest change first within a state."""
    order = {"open": 0, "escalated": 1, "acknowledged": 2}
    rank = alerts["state"].map(order).fillna(len(order))
    return alerts.assign(_r=rank).sort_values(["_r", "updated_at"], ascending=[True, False]).drop(columns=["_r"])


def who_acted(row: Mapping[str, object]) -> str:
    """Who acted on the alert: who acknowledged it, and who changed it last (with the reason given)."""
    parts = []
    if isinstance(row["acknowledged_by"], str):
        parts.append(f"acknowledged by {row['acknowledged_by']}")
    changed_since_ack = not (row["state"] == "acknowledged" and row["updated_by"] == row["acknowledged_by"])
    if int(row["events"]) > 1 and changed_since_ack:
        parts.append(f"{row['state']} by {row['updated_by']} at {_time(row['updated_at'])}")
    if isinstance(row["reason"], str) and row["reason"]:
        parts.append(f"reason: {row['reason']}")
    return " · ".join(parts)


def ward_alert_html(row: Mapping[str, object]) -> str:
    """One alert a ward acts on: patient, kind, state, when raised, scores, who acted."""
    state = str(row["state"])
    colour = RISK_COLOURS["High"] if state in ACTIVE_STATES else UNSCORED_COLOUR
    acted = who_acted(row)
    return (
        f'<li class="vf-ward-alert" data-alert="{html.escape(str(row["alert_id"]))}" data-state="{html.escape(state)}" '
        f'style="margin:4px 0;padding:6px 8px;border-left:6px solid {colour};list-style:none;font-family:sans-serif">'
        f"<b>{html.escape(str(row['patient_id']))}</b> {html.escape(str(row['kind']))} alert · "
        f'<span class="vf-state">{html.escape(state)}</span> · raised {_time(row["raised_at"])} · NEWS2 '
        f"{_number(row['news2_score'])} · P(High) {_number(row['probability_high'], 2)}"
        f"{' · ' + html.escape(acted) if acted else ''}</li>"
    )


def ward_alerts_html(alerts: pd.DataFrame) -> str:
    items = "".join(ward_alert_html(row) for row in by_state(alerts).to_dict("records"))
    return f'<ul class="vf-ward-alerts" style="padding:0;margin:0">{items}</ul>'


def budget_text(raised: object, rate: object) -> tuple[str, str]:
    """The header's alert rate against the budget: (value, caption)."""
    if rate is None or pd.isna(rate):
        return "–", "no reading time yet" if raised is not None and not pd.isna(raised) else "alerts not kept yet"
    ratio = float(rate) / ALERT_BUDGET
    return f"{float(rate):.1f}", f"{ratio:.1f}× the budget of {ALERT_BUDGET:g} per 35 patients per day ({int(raised)} raised)"


def widget_key(action: str, alert_id: str) -> str:
    """A widget key (and so a CSS class, st-key-…) for an alert's control: only letters, digits, - and _."""
    return f"{action}-{re.sub(r'[^A-Za-z0-9_-]', '-', alert_id)}"


def server_message(body: bytes) -> str:
    """The message of a refusal: FastAPI's detail shape (`{"detail": [{"msg": …}]}`), else the text."""
    try:
        detail = json.loads(body)["detail"]
        return "; ".join(str(d["msg"]) for d in detail) if isinstance(detail, list) else str(detail)
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip()[:300] or "no message"


def act_on_alert(http_url: str, alert_id: str, action: str, user: str, password: str,
                 reason: str | None = None, timeout: float = 30) -> tuple[bool, str]:
    """POST /alerts/{alert_id}/{action} as `user`: (accepted, what to tell the user). Refusals carry the
    server's own message."""
    url = f"{http_url.rstrip('/')}/alerts/{urllib.parse.quote(alert_id, safe=':')}/{action}"
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    body = json.dumps({"reason": reason} if reason else {}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            alert = json.loads(answer.read())
        return True, f"{alert['patient_id']}'s alert {alert['alert_id']} is {alert['state']}: {action} recorded as {user}."
    except urllib.error.HTTPError as refused:
        return False, f"vitalflow refused to {action} alert {alert_id} ({refused.code}): {server_message(refused.read())}"
    except (urllib.error.URLError, OSError) as error:
        why = getattr(error, "reason", error)
        return False, f"vitalflow's HTTP API is not answering at {http_url} ({why}): is VITALFLOW_HTTP_URL right?"


def render_sign_in() -> None:
    """The sidebar: who acts on alerts. The name and password stay in this browser session (the page's
    server memory) and go with each action to the HTTP API, which checks them and records the name."""
    with st.sidebar:
        st.subheader("Act on alerts")
        user = st.session_state.get("acting_user")
        if user:
            st.markdown(f"Signed in as **{html.escape(user)}**: actions are recorded under this name.")
            if st.button("Sign out", key="sign_out"):
                for name in ("acting_user", "acting_password", "alert_result"):
                    st.session_state.pop(name, None)
                st.rerun()
            return
        st.caption("Sign in with your own vitalflow name and password (role clinician) to acknowledge, "
                   "escalate or dismiss alerts.")
        # A form: the name and password are taken together with the click, never one before the other.
        with st.form("sign_in_form"):
            name = st.text_input("User", key="sign_in_user")
            password = st.text_input("Password", type="password", key="sign_in_password")
            submitted = st.form_submit_button("Sign in", key="sign_in")
        if submitted and name:
            st.session_state["acting_user"] = name
            st.session_state["acting_password"] = password
            st.session_state.pop("alert_result", None)
            st.rerun()


def render_alert_actions(server: Settings, alerts: pd.DataFrame) -> None:
    """Per active alert: a reason and the four actions, sent under the signed-in user."""
    user = st.session_state.get("acting_user")
    if not user:
        st.caption("Sign in (left) to act on these alerts.")
        return
    active = by_state(alerts)
    active = active[active["state"].isin(ACTIVE_STATES)].head(MAX_ACTIONABLE)
    for row in active.to_dict("records"):
        alert_id = str(row["alert_id"])
        cols = st.columns([3, 3, 1, 1, 1, 1])
        cols[0].markdown(f"**{html.escape(str(row['patient_id']))}** · {html.escape(str(row['state']))}")
        cols[1].text_input("Reason", key=widget_key("reason", alert_id), label_visibility="collapsed",
                           placeholder="reason (needed to dismiss)")
        for col, action in zip(cols[2:], ACTIONS):
            # A callback runs before the page is drawn again, so the list then shows the alert after the action.
            col.button(action.capitalize(), key=widget_key(action, alert_id), on_click=send_action,
                       args=(server.http_url, alert_id, action))


def send_action(http_url: str, alert_id: str, action: str) -> None:
    """A button's callback: the action under the signed-in user, and what happened for the page to show."""
    reason = st.session_state.get(widget_key("reason", alert_id)) or None
    st.session_state["alert_result"] = act_on_alert(
        http_url, alert_id, action, st.session_state.get("acting_user", ""),
        st.session_state.get("acting_password", ""), reason)


def render_ward_alerts(server: Settings) -> None:
    st.subheader("Alerts to act on")
    result = st.session_state.get("alert_result")
    if result:
        (st.success if result[0] else st.error)(result[1])
    try:
        alerts = query(server, WARD_ALERTS_SQL)
    except Exception as error:
        st.info(f"No alerts to act on yet (the alert keeper has not written any): {explain(error, server.url)}")
        return
    if alerts.empty:
        st.success("No alert is open, and none changed in the last hour.")
        return
    st.html(ward_alerts_html(alerts))
    render_alert_actions(server, alerts)


def risk_pie(latest: pd.DataFrame) -> go.Figure:
    counts = latest["risk"].fillna("Unscored").value_counts().rename_axis("risk").reset_index(name="patients")
    pie = px.pie(counts, names="risk", values="patients", color="risk",
                 color_discrete_map=dict(RISK_COLOURS, Unscored=UNSCORED_COLOUR), hole=0.35)
    pie.update_layout(margin=dict(t=10, b=10, l=10, r=10), height=320)
    return pie


def history_figure(history: pd.DataFrame, changes: pd.DataFrame) -> go.Figure:
    """Each vital over time, its normal band shaded, risk changes as vertical lines in the new level's colour."""
    titles = [f"{v.replace('_', ' ')} ({UNITS[v]})" for v in VITALS]
    fig = make_subplots(rows=len(VITALS), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.03)
    for i, vital in enumerate(VITALS, start=1):
        fig.add_trace(go.Scatter(x=history["event_time"], y=history[vital], mode="lines+markers", name=vital,
                                 marker=dict(size=5, color=[risk_colour(r) for r in history["risk"]]),
                                 line=dict(color="#1f77b4", width=1)), row=i, col=1)
        # After the trace: plotly leaves shapes out of subplots that are still empty.
        low, high = NORMAL_BANDS[vital]
        fig.add_hrect(y0=low, y1=high, row=i, col=1, fillcolor=RISK_COLOURS["Low"], opacity=0.12, line_width=0)
    for change in changes.to_dict("records"):
        fig.add_vline(x=change["event_time"], line_color=risk_colour(change["risk"]), line_dash="dot", line_width=2,
                      row="all", col=1)
    fig.update_xaxes(title_text="time (UTC)", row=len(VITALS), col=1)
    fig.update_layout(height=150 * len(VITALS), showlegend=False, margin=dict(t=30, b=10, l=10, r=10))
    return fig


def why_html(
    patient: str, risk: object, calibrated: object, p_high: object, why: Mapping[str, float] | None
) -> str:
    """Why the newest reading has its risk: its calibrated P(High), then the forest's own P(High) as the
    model's base rate plus each input's push, the largest first (positive towards High); the contributions
    add up to the forest's P(High) (exact TreeSHAP)."""
    pid = html.escape(str(patient))
    level = risk if isinstance(risk, str) else "Unscored"
    if not why or p_high is None or pd.isna(p_high):
        return f'<div class="vf-why" data-patient="{pid}">No explanation: a vital of the newest reading is missing.</div>'
    pushes = sorted(((k, float(v)) for k, v in why.items() if k != "base"), key=lambda kv: -abs(kv[1]))
    items = "".join(
        f'<li data-input="{html.escape(name)}" style="color:{RISK_COLOURS["High"] if value > 0 else RISK_COLOURS["Low"]}">'
        f"{html.escape(name.replace('_', ' '))} {value:+.3f}</li>"
        for name, value in pushes
    )
    return (
        f'<div class="vf-why" data-patient="{pid}" data-risk="{html.escape(level)}" style="font-family:sans-serif">'
        f"<b>Why {html.escape(level)}</b>: P(High) {_number(calibrated, 2)}; "
        f"the forest's P(High) {float(p_high):.3f} = the model's base {float(why['base']):.3f} "
        f"plus what each input adds:<ol style=\"margin:4px 0\">{items}</ol></div>"
    )


def render_drill_down(server: Settings, latest: pd.DataFrame) -> None:
    st.subheader("Patient drill-down")
    patients = by_urgency(latest)["patient_id"].tolist()
    if st.session_state.get("patient") not in patients:
        st.session_state["patient"] = patients[0]
    patient = st.selectbox("Patient", patients, key="patient")
    arguments = query(server, ARGUMENTS_SQL)["arguments"].iloc[0]
    explained = query(server, why_sql(arguments), (patient,))
    if not explained.empty:
        row = explained.iloc[0]
        st.html(why_html(patient, row["risk"], row["probability_high"], row["p_high"], row["why"]))
    history = query(server, HISTORY_SQL, (patient,)).sort_values("event_time")
    if history.empty:
        st.info(f"No readings of {patient} in the last {HISTORY_MINUTES} minutes.")
        return
    changes = risk_changes(history)
    st.caption(f"{len(history)} reading{'s' if len(history) != 1 else ''} of the last {HISTORY_MINUTES} minutes. Shaded: the rubric's normal band "
               "(0 points). Dotted lines: risk changes, in the new level's colour.")
    st.plotly_chart(history_figure(history, changes), width="stretch")
    if changes.empty:
        st.caption("No risk change in this window.")
    else:
        st.dataframe(changes, hide_index=True, width="stretch")


def render() -> None:
    server = settings()
    now = datetime.now(timezone.utc)
    try:
        latest = query(server, LATEST_SQL)
        newest = query(server, FRESHNESS_SQL)["newest"].iloc[0]
        alerts = query(server, ALERTS_SQL)
    except Exception as error:  # the page explains and retries; it never shows a stack trace
        st.warning(f"{explain(error, server.url)} Retrying every {REFRESH_SECONDS} s.")
        return

    age = seconds_since(newest, now)
    if age is None:
        st.info("No readings yet. Waiting for data…")
        return
    if age > STALE_SECONDS:
        st.warning(f"No new reading for {age:.0f} s: is the feed (Kafka, ingest, ETL) running?")
    if latest.empty:
        st.info(f"No readings in the last {WINDOW_MINUTES} minutes. Waiting for data…")
        return

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Patients", len(latest))
    c2.metric("High risk now", int((latest["risk"] == "High").sum()))
    c3.metric("Newest reading", f"{age:.0f} s ago")
    try:
        budget = query(server, BUDGET_SQL)
        value, caption = budget_text(budget["ward_alerts"].iloc[0], budget["alerts_per_35_patients_per_day"].iloc[0])
    except Exception as error:
        value, caption = "–", explain(error, server.url)
    c4.metric("Alerts per 35 patients per day", value, help="Alerts a ward acts on, per 35 patients per day of "
              "the readings' time; Kaiser Permanente's Advance Alert Monitor budgets about 1.")
    c4.caption(caption)

    st.subheader("Ward overview")
    st.html(ward_html(latest))

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Risk distribution")
        st.plotly_chart(risk_pie(latest), width="stretch")
    with right:
        st.subheader(f"Rises to High (last {WINDOW_MINUTES} minutes)")
        if alerts.empty:
            st.success(f"No patient rose to High in the last {WINDOW_MINUTES} minutes.")
        else:
            st.html(alerts_html(alerts, latest, now))

    render_ward_alerts(server)

    st.subheader("Latest vitals per patient")
    st.dataframe(
        latest.style.apply(
            lambda row: [f"color: {risk_colour(row['risk'])}" if c == "risk" else "" for c in row.index],
            axis=1,
        ).format({**{v: "{:.0f}" for v in VITALS}, "temperature": "{:.1f}", "news2_score": "{:.0f}"}, na_rep="–"),
        hide_index=True,
        width="stretch",
    )

    try:
        render_drill_down(server, latest)
    except Exception as error:
        st.warning(f"{explain(error, server.url)} Retrying every {REFRESH_SECONDS} s.")


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    render()


def main() -> None:
    st.set_page_config(page_title="vitalflow ward", page_icon="🩺", layout="wide")
    st.title("vitalflow: patient vitals and risk")
    st.caption(f"Live from {settings().url} over Arrow Flight SQL, refreshing every {REFRESH_SECONDS} s.")
    render_sign_in()
    live()


# Streamlit runs the page as __main__; tests import the functions above without rendering.
if __name__ == "__main__":
    main()
