//! The SQL of the provisioned Grafana dashboards (clients/grafana/dashboards, built into the binary so
//! the benchmark sends what a user's Grafana sends), expanded as the FlightSQL datasource (plugin
//! v1.1.1) expands it for a refresh at a given moment: the dashboard's range (`now-1h` to now), the
//! panel's `$__interval` (the range over Grafana's ~1000 points, at least the panel's minimum), and
//! the `$patient` variable. Only the macros the dashboards use are known; any other is an error, so a
//! dashboard edit cannot slip through unexpanded.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The dashboard files, by name.
const DASHBOARDS: &[(&str, &str)] = &[
    ("ward", include_str!("../../clients/grafana/dashboards/ward.json")),
    ("patient", include_str!("../../clients/grafana/dashboards/patient.json")),
];

/// The dashboards' time range in seconds (`"time": {"from": "now-1h"}` in both files).
const RANGE_SECONDS: i64 = 3_600;

/// Grafana's data points for a full-width panel without `maxDataPoints`.
const DEFAULT_POINTS: i64 = 1_000;

#[derive(Deserialize)]
struct Dashboard {
    panels: Vec<Panel>,
    #[serde(default)]
    templating: Templating,
}

#[derive(Deserialize, Default)]
struct Templating {
    #[serde(default)]
    list: Vec<Variable>,
}

#[derive(Deserialize)]
struct Variable {
    name: String,
    #[serde(default)]
    query: String,
}

#[derive(Deserialize)]
struct Panel {
    title: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "queryText")]
    query_text: String,
}

/// One panel's (or variable's) SQL with its macros still in it.
#[derive(Debug, Clone)]
pub(crate) struct PanelQuery {
    /// `dashboard: panel title`.
    pub(crate) name: String,
    sql: String,
    /// The panel's `$__interval`, whole seconds.
    interval_seconds: i64,
}

impl PanelQuery {
    /// The SQL Grafana sends for a refresh at `now`, showing `patient`.
    pub(crate) fn expand(&self, now: DateTime<Utc>, patient: &str) -> anyhow::Result<String> {
        let (from, to) = (rfc3339(now - chrono::TimeDelta::seconds(RANGE_SECONDS)), rfc3339(now));
        let sql = self.sql.replace("${patient}", patient).replace("$patient", patient);
        let mut out = String::with_capacity(sql.len() + 128);
        let mut rest = sql.as_str();
        while let Some(at) = rest.find("$__") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 3..];
            let name_len = after.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(after.len());
            let (name, after) = after.split_at(name_len);
            let Some(args_and_rest) = after.strip_prefix('(') else {
                bail!("{}: $__{name} without brackets (the plugin drops text after it)", self.name)
            };
            let close = args_and_rest.find(')').with_context(|| format!("{}: $__{name}( is not closed", self.name))?;
            let arg = args_and_rest[..close].trim();
            out.push_str(&match name {
                "timeFilter" => format!("{arg} >= '{from}' AND {arg} <= '{to}'"),
                "dateBin" => format!(
                    "date_bin(interval '{} second', {arg}, timestamp '1970-01-01T00:00:00Z')",
                    self.interval_seconds
                ),
                "timeFrom" => format!("cast('{from}' as timestamp)"),
                "timeTo" => format!("cast('{to}' as timestamp)"),
                other => bail!("{}: macro $__{other} is not expanded by this benchmark", self.name),
            });
            rest = &args_and_rest[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Every panel target and template variable query of the provisioned dashboards.
pub(crate) fn panel_queries() -> anyhow::Result<Vec<PanelQuery>> {
    let mut out = Vec::new();
    for (file, text) in DASHBOARDS {
        let dashboard: Dashboard =
            serde_json::from_str(text).with_context(|| format!("reading the {file} dashboard"))?;
        for v in dashboard.templating.list.iter().filter(|v| !v.query.is_empty()) {
            out.push(PanelQuery { name: format!("{file}: ${}", v.name), sql: v.query.clone(), interval_seconds: 1 });
        }
        for p in &dashboard.panels {
            let interval_seconds = panel_interval(p).with_context(|| format!("{file}: {}", p.title))?;
            for t in &p.targets {
                out.push(PanelQuery {
                    name: format!("{file}: {}", p.title),
                    sql: t.query_text.clone(),
                    interval_seconds,
                });
            }
        }
    }
    Ok(out)
}

/// Grafana's `$__interval` for the panel: the range over the data points, at least the panel's minimum.
fn panel_interval(p: &Panel) -> anyhow::Result<i64> {
    let by_points = (RANGE_SECONDS / DEFAULT_POINTS).max(1);
    let minimum = match p.interval.as_deref() {
        None | Some("") => 1,
        Some(s) => s
            .strip_suffix('s')
            .and_then(|n| n.parse::<i64>().ok())
            .with_context(|| format!("minimum interval {s:?} (only seconds, e.g. \"10s\", are read)"))?,
    };
    Ok(by_points.max(minimum))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provisioned_panel_expands_to_sql_without_macros_or_variables() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T02:00:00Z").expect("a time").with_timezone(&Utc);
        let queries = panel_queries().expect("the dashboards parse");
        assert!(queries.len() >= 9, "{} queries", queries.len());
        for q in &queries {
            let sql = q.expand(now, "P007").expect("known macros");
            assert!(!sql.contains('$'), "{}: {sql}", q.name);
        }
        let in_range = queries.iter().find(|q| q.name == "ward: Readings in range").expect("the ward's stat");
        let sql = in_range.expand(now, "P007").expect("known macros");
        assert!(
            sql.contains("cast('2026-12-05T01:00:00Z' as timestamp)") && sql.contains("'2026-12-05T02:00:00Z'"),
            "{sql}"
        );
    }

    #[test]
    fn a_macro_without_brackets_or_unknown_is_refused() {
        let q = |sql: &str| PanelQuery { name: "t".into(), sql: sql.into(), interval_seconds: 10 };
        assert!(q("SELECT 1 WHERE t > $__timeFrom").expand(Utc::now(), "P001").is_err());
        assert!(q("SELECT $__timeGroup(t, minute)").expand(Utc::now(), "P001").is_err());
        let binned = q("SELECT $__dateBin(event_time) AS time").expand(Utc::now(), "P001").expect("dateBin");
        assert!(binned.contains("interval '10 second', event_time"), "{binned}");
    }
}
