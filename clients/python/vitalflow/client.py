"""`connect()`: an ADBC Flight SQL DB-API connection with `query` (pandas) and `query_arrow` (pyarrow)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Mapping, Sequence

import adbc_driver_flightsql
import adbc_driver_manager
import adbc_driver_manager.dbapi

# vitalflow's Flight SQL default port on this machine (docs/design.md, Processes).
DEFAULT_URL = "grpc://127.0.0.1:50060"
_SCHEMES = ("grpc://", "grpc+tcp://", "grpc+tls://")


class Connection(adbc_driver_manager.dbapi.Connection):
    """An ADBC Flight SQL connection (DB-API 2.0: cursors, `?` parameters, `adbc_get_objects`, ...)
    with one-call queries."""

    def query_arrow(self, sql: str, parameters: Sequence[Any] | None = None):
        """Runs `sql` (with `?` placeholders bound to `parameters`) and returns a pyarrow.Table."""
        with self.cursor() as cur:
            cur.execute(sql, parameters)
            return cur.fetch_arrow_table()

    def query(self, sql: str, parameters: Sequence[Any] | None = None):
        """Runs `sql` and returns a pandas.DataFrame (timestamps stay UTC-aware)."""
        return self.query_arrow(sql, parameters).to_pandas()


# The environment every vitalflow client reads (README "Environment"), and the older names still read,
# with a FutureWarning (shown to users, unlike DeprecationWarning), when the current one is unset.
DEPRECATED_ENV = {
    "VITALFLOW_FLIGHT_SQL_URL": ("VITALFLOW_FLIGHT_SQL", "VITALFLOW_FLIGHT_SQL_HOST", "VITALFLOW_FLIGHT_SQL_ADDR"),
    "VITALFLOW_USER": ("VITALFLOW_FLIGHT_SQL_USER", "VITALFLOW_GRAFANA_USER"),
    "VITALFLOW_PASSWORD": ("VITALFLOW_FLIGHT_SQL_PASSWORD", "VITALFLOW_GRAFANA_PASSWORD"),
    "VITALFLOW_TOKEN": ("VITALFLOW_GRAFANA_TOKEN",),
}


def env(name: str) -> str | None:
    """$name, else the first of its deprecated names that is set (with a warning); None if unset."""
    if os.environ.get(name):
        return os.environ[name]
    for old in DEPRECATED_ENV.get(name, ()):
        if os.environ.get(old):
            warnings.warn(f"{old} is deprecated: set {name} instead", FutureWarning, stacklevel=2)
            return os.environ[old]
    return None


def _url(url: str | None) -> str:
    url = url or env("VITALFLOW_FLIGHT_SQL_URL") or DEFAULT_URL
    if "://" not in url:
        # host:port, as Grafana's datasource takes it.
        url = "grpc://" + url
    if not url.startswith(_SCHEMES):
        raise ValueError(f"vitalflow.connect: {url!r} is not a Flight SQL URL: use grpc://host:port or grpc+tls://host:port")
    return url


def connect(
    url: str | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    tls_root_certs: str | bytes | None = None,
    db_kwargs: Mapping[str, str] | None = None,
) -> Connection:
    """Opens a Flight SQL connection to vitalflow.

    url: `grpc://host:port` (or `host:port`), `grpc+tls://host:port` for TLS; default
    $VITALFLOW_FLIGHT_SQL_URL, else grpc://127.0.0.1:50060.
    Sign in with `user` and `password` (a user of flight_sql.auth.users) or with a static `token`
    (flight_sql.auth.tokens); unset, they come from $VITALFLOW_USER / $VITALFLOW_PASSWORD or $VITALFLOW_TOKEN,
    and with none of them the connection is anonymous (`vitalflow up` turns authentication off).
    tls_root_certs: PEM (text, bytes or a file path) of the CA that signed the server's certificate.
    db_kwargs: further ADBC Flight SQL options.
    """
    url = _url(url)
    if user is None and password is None and token is None:
        user, password, token = (env(k) for k in ("VITALFLOW_USER", "VITALFLOW_PASSWORD", "VITALFLOW_TOKEN"))
    if token and (user or password):
        raise ValueError("vitalflow.connect: give either user and password, or token, not both")
    if (user is None) != (password is None):
        raise ValueError("vitalflow.connect: user and password go together")
    options = {}
    if token:
        options[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    elif user is not None:
        options["username"], options["password"] = user, password
    # Neither: a server with flight_sql.auth.required = false (`vitalflow up`); any other says "credentials required".
    if tls_root_certs is not None:
        if not url.startswith("grpc+tls://"):
            raise ValueError("vitalflow.connect: tls_root_certs needs a grpc+tls:// URL")
        if isinstance(tls_root_certs, bytes):
            pem = tls_root_certs.decode()
        elif "-----BEGIN" in tls_root_certs:
            pem = tls_root_certs
        else:
            with open(tls_root_certs, encoding="utf-8") as f:
                pem = f.read()
        options[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = pem
    options.update(db_kwargs or {})

    db = conn = None
    try:
        db = adbc_driver_flightsql.connect(url, db_kwargs=options)
        conn = adbc_driver_manager.AdbcConnection(db)
        return Connection(db, conn, autocommit=True)
    except Exception:
        if conn is not None:
            conn.close()
        if db is not None:
            db.close()
        raise
