//! The scheduler process's Prometheus exposition: the ETL's, alert delivery's and the alert keeper's counters, written
//! with the exposition shared with ingest ([`vitalflow_ingest::prometheus`]). The HTTP API serves it on
//! `/metrics` after its own counters.

use std::sync::atomic::Ordering;

use vitalflow_ingest::prometheus::{Exposition, escape_label};

use crate::alerts::SinkStats;
use crate::cluster_executors::ExecutorCounts;
use crate::etl::EtlStats;
use crate::ward_alerts::KeeperStats;

/// Appends the ETL driver's and the alert sinks' metrics to `page`.
pub fn render_etl(page: &mut Exposition, etl: &EtlStats) {
    for (name, help, value) in [
        ("vitalflow_etl_batches_total", "ETL micro-batches committed.", &etl.batches),
        ("vitalflow_etl_rows_total", "Rows the ETL wrote to vitals_clean.", &etl.rows_out),
        ("vitalflow_etl_failures_total", "ETL micro-batches that failed and were retried.", &etl.failures),
    ] {
        page.counter(name, help, value.load(Ordering::Relaxed));
    }
    type Read = fn(&SinkStats) -> u64;
    let families: [(&str, &str, &str, Read); 3] = [
        ("vitalflow_alerts_delivered_total", "counter", "Alerts acknowledged by a sink.", |s| {
            s.delivered.load(Ordering::Relaxed)
        }),
        (
            "vitalflow_alerts_delivery_failures_total",
            "counter",
            "Alert delivery attempts that failed and are retried.",
            |s| s.failures.load(Ordering::Relaxed),
        ),
        (
            "vitalflow_alerts_delivered_batch_id",
            "gauge",
            "Last ETL micro-batch whose alerts a sink acknowledged.",
            |s| s.last_batch_id.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        page.family(name, kind, help);
        for (sink, stats) in etl.delivery.sinks().into_iter().filter(|(_, s)| s.enabled.load(Ordering::Relaxed)) {
            page.sample(name, &format!("sink=\"{sink}\""), value(stats));
        }
    }
}

/// Appends the Ballista scheduler's jobs in memory, (running, finished), to `page`: the bounded job
/// history (`scheduler.finished_job_seconds`) made visible.
pub fn render_cluster_jobs(page: &mut Exposition, (running, finished): (usize, usize)) {
    let name = "vitalflow_cluster_jobs";
    page.family(name, "gauge", "Jobs the Ballista scheduler holds in memory: running (or queued), and finished ones kept for scheduler.finished_job_seconds.");
    page.sample(name, "state=\"running\"", running);
    page.sample(name, "state=\"finished\"", finished);
}

/// Appends the scheduler's executors (alive, silent) and the replacements of lost ones to `page`.
pub fn render_cluster_executors(page: &mut Exposition, counts: ExecutorCounts) {
    let name = "vitalflow_cluster_executors";
    page.family(name, "gauge", "Executors registered with the Ballista scheduler: alive (heard from within scheduler.executor_timeout_seconds) or silent.");
    page.sample(name, "state=\"alive\"", counts.alive);
    page.sample(name, "state=\"silent\"", counts.silent);
    let name = "vitalflow_cluster_executors_replaced_total";
    page.family(
        name,
        "counter",
        "Executors this process replaced (vitalflow up): their task ended, or they went silent.",
    );
    page.sample(name, "reason=\"ended\"", counts.replaced_ended);
    page.sample(name, "reason=\"silent\"", counts.replaced_silent);
}

/// Appends the alert keeper's counters to `page`.
pub fn render_ward_alerts(page: &mut Exposition, keeper: &KeeperStats) {
    for (name, help, value) in [
        (
            "vitalflow_ward_alerts_raised_total",
            "Alerts raised (rises to High the muting rule let through).",
            &keeper.raised,
        ),
        ("vitalflow_ward_alert_events_total", "Alert events recorded (raises and every action).", &keeper.events),
        (
            "vitalflow_ward_alert_failures_total",
            "Alert commits that failed (their actions were refused).",
            &keeper.failures,
        ),
    ] {
        page.counter(name, help, value.load(Ordering::Relaxed));
    }
    let rates = keeper.rates.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(rates) = rates else { return };
    // Budget figures (Kaiser's: about 1), as last read from the store; absent without patients or time.
    let name = "vitalflow_ward_alerts_per_35_patients_per_day";
    page.family(name, "gauge", "Alerts raised per 35 patients per day since the alert keeper first ran, all wards.");
    if let Some(rate) = rates.per_35_patients_per_day {
        page.sample(name, "", rate);
    }
    let name = "vitalflow_ward_alerts_per_35_patients_per_day_by_ward";
    page.family(name, "gauge", "Alerts raised per 35 patients per day on each ward (its alerts over its patients).");
    for ward in &rates.wards {
        if let Some(rate) = ward.per_35_patients_per_day {
            page.sample(name, &format!("ward=\"{}\"", escape_label(&ward.ward)), rate);
        }
    }
}
