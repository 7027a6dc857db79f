"""vitalflow ward dashboard: the seed's Streamlit page, reading vitalflow over Arrow Flight SQL.

Started by `vitalflow up` (or by hand: `streamlit run clients/streamlit/app.py`). Settings come from the
environment: VITALFLOW_FLIGHT_SQL (default grpc://127.0.0.1:50060), and VITALFLOW_TOKEN or
VITALFLOW_USER / VITALFLOW_PASSWORD when the server requires authentication.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pandas as pd
import plotly.express as px
import streamlit as st

REFRESH_SECONDS = 5
WINDOW_MINUTES = 15
RISK_COLOURS = {"High": "#d62728", "Medium": "#ff7f0e", "Low": "#2ca02c"}
VITALS = ["heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose", "respiratory_rate"]

# patient_latest: one row per patient, kept current by each ETL micro-batch, so this never scans history.
LATEST_SQL = f"""
SELECT patient_id, event_time, {", ".join(VITALS)}, risk, news2_score
FROM patient_latest
WHERE event_time > now() - INTERVAL '{WINDOW_MINUTES} minutes'
ORDER BY patient_id
"""

ALERTS_SQL = f"""
SELECT event_time, patient_id, {", ".join(VITALS)}, news2_score
FROM vitals_clean
WHERE risk = 'High' AND event_time > now() - INTERVAL '5 minutes'
ORDER BY event_time DESC
LIMIT 50
"""


def server_url() -> str:
    return os.environ.get("VITALFLOW_FLIGHT_SQL", "grpc://127.0.0.1:50060")


@st.cache_resource(show_spinner=False)
def connection():
    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    db_kwargs = {}
    if os.environ.get("VITALFLOW_TOKEN"):
        db_kwargs[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {os.environ['VITALFLOW_TOKEN']}"
    elif os.environ.get("VITALFLOW_USER"):
        db_kwargs["username"] = os.environ["VITALFLOW_USER"]
        db_kwargs["password"] = os.environ.get("VITALFLOW_PASSWORD", "")
    return flightsql.connect(server_url(), db_kwargs=db_kwargs, autocommit=True)


def query(sql: str) -> pd.DataFrame:
    try:
        cur = connection().cursor()
        try:
            cur.execute(sql)
            return cur.fetch_arrow_table().to_pandas()
        finally:
            cur.close()
    except Exception:
        # A dead connection stays dead: drop it so that the next refresh reconnects.
        connection.clear()
        raise


def render() -> None:
    try:
        latest = query(LATEST_SQL)
        alerts = query(ALERTS_SQL)
    except Exception as error:  # the page explains and retries; it never shows a stack trace
        st.warning(
            f"Cannot read from vitalflow at {server_url()} right now ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200] if str(error) else 'no detail'}). Retrying every {REFRESH_SECONDS} s."
        )
        return

    if latest.empty:
        st.info(f"No readings in the last {WINDOW_MINUTES} minutes yet. Waiting for data…")
        return

    newest = pd.Timestamp(latest["event_time"].max())
    if newest.tzinfo is None:
        newest = newest.tz_localize("UTC")
    age = (datetime.now(timezone.utc) - newest.to_pydatetime()).total_seconds()
    high = int((latest["risk"] == "High").sum())
    c1, c2, c3 = st.columns(3)
    c1.metric("Patients", len(latest))
    c2.metric("High risk now", high)
    c3.metric("Newest reading", f"{max(age, 0):.0f} s ago")

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Risk distribution")
        counts = latest["risk"].fillna("Unscored").value_counts().rename_axis("risk").reset_index(name="patients")
        pie = px.pie(counts, names="risk", values="patients", color="risk",
                     color_discrete_map=dict(RISK_COLOURS, Unscored="#7f7f7f"), hole=0.35)
        pie.update_layout(margin=dict(t=10, b=10, l=10, r=10), height=320)
        st.plotly_chart(pie, width="stretch")
    with right:
        st.subheader("High-risk alerts (last 5 minutes)")
        if alerts.empty:
            st.success("No high-risk readings in the last 5 minutes.")
        else:
            st.dataframe(alerts, hide_index=True, width="stretch", height=320)

    st.subheader("Latest vitals per patient")
    st.dataframe(
        latest.style.apply(
            lambda row: [f"color: {RISK_COLOURS.get(row['risk'], 'inherit')}" if c == "risk" else "" for c in row.index],
            axis=1,
        ),
        hide_index=True,
        width="stretch",
    )


st.set_page_config(page_title="vitalflow ward", page_icon="🩺", layout="wide")
st.title("vitalflow: patient vitals and risk")
st.caption(f"Live from {server_url()} over Arrow Flight SQL, refreshing every {REFRESH_SECONDS} s.")


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    render()


live()
