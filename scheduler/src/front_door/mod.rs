//! The front door: every way a user reaches the data. Flight SQL (read-only SQL for notebooks,
//! Grafana, JDBC and ADBC tools), the HTTP API (`/predict_batch`, `/healthz`, `/metrics`), and what
//! both share: sign-in ([`auth`], with [`sign_in_backoff`]), the audit log ([`audit`], written to the
//! lake by `audit_lake`) and which tables each role reads (`table_access`).

pub mod audit;
mod audit_lake;
pub mod auth;
pub mod flight_sql;
pub mod http;
pub mod sign_in_backoff;
mod sql_limits;
mod table_access;
