# syntax=docker/dockerfile:1
# The Streamlit dashboard (clients/streamlit/app.py) in a small runtime image. Build from the repository root:
#   docker build -f deploy/dashboard.Dockerfile -t vitalflow-dashboard .
# The same venv and Streamlit options as deploy/local-cluster.sh (which the test suite runs).

FROM python:3.11-slim-bookworm AS build
COPY clients/streamlit/requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm AS runtime
COPY --from=build /opt/venv /opt/venv
COPY clients/streamlit/app.py /app/app.py
RUN useradd --system --uid 10001 --home-dir /app dashboard
USER 10001
WORKDIR /app
# Where the Flight SQL front door is, and credentials (a reader): VITALFLOW_FLIGHT_SQL_URL, VITALFLOW_USER /
# VITALFLOW_PASSWORD or VITALFLOW_TOKEN, given by compose or Kubernetes. No default URL here: an image default
# would hide the deprecated VITALFLOW_FLIGHT_SQL that older deployments still set.
ENV STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
EXPOSE 8501
ENTRYPOINT ["/opt/venv/bin/python", "-m", "streamlit", "run", "/app/app.py", "--server.headless", "true", "--server.address", "0.0.0.0", "--server.port", "8501", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
