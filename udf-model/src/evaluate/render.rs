//! The report as text for a terminal, as one JSON object, and as a small self-contained HTML page (a
//! table and an inline SVG bar chart, no scripts).

use std::fmt::Write;

use super::report::{EvaluationReport, MatchedScore, WardSource};
use super::scores::ScoreKind;
use crate::error::{Error, Result};

/// The report as one JSON object (the keys `docs/model.md` documents).
pub fn json(report: &EvaluationReport) -> Result<String> {
    serde_json::to_string_pretty(report).map_err(|e| Error::Evaluation(format!("writing the report as JSON: {e}")))
}

/// A number with `decimals` decimals, or `-` when there is none.
fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".to_string(),
    }
}

/// `0.812 [0.790, 0.833]`, or `-` parts where there is no figure.
fn with_interval(value: Option<f64>, interval: Option<[f64; 2]>) -> String {
    let [lo, hi] = interval.map_or([None, None], |[lo, hi]| [Some(lo), Some(hi)]);
    format!("{} [{}, {}]", number(value, 3), number(lo, 3), number(hi, 3))
}

/// The threshold as the score states it: a probability for the model, whole points otherwise.
fn threshold(kind: ScoreKind, figures: &MatchedScore) -> String {
    match kind {
        ScoreKind::Model => format!("≥ {}{}", number(figures.threshold, 4), highest_mark(figures)),
        ScoreKind::News2 | ScoreKind::Rubric => format!("≥ {}{}", number(figures.threshold, 0), highest_mark(figures)),
    }
}

/// `*` beside a threshold when even the score's highest threshold alerts more often than the budget.
fn highest_mark(figures: &MatchedScore) -> &'static str {
    if figures.budget_unreachable { "*" } else { "" }
}

/// The footnote of [`highest_mark`].
const HIGHEST_NOTE: &str = "* even the score's highest threshold alerts more often than the budget";

/// Whether any threshold carries [`highest_mark`].
fn any_unreachable(report: &EvaluationReport) -> bool {
    report.matched.iter().any(|m| ScoreKind::ALL.into_iter().any(|k| m.get(k).budget_unreachable))
}

/// What was evaluated, in one sentence.
fn ward_description(report: &EvaluationReport) -> String {
    let ward = &report.ward;
    let per_35_days = ward.episodes as f64 * 35.0 / ward.patient_days.max(f64::MIN_POSITIVE);
    match &ward.source {
        WardSource::Simulated { hours, seed, seconds_per_reading, episode_rate_per_hour, episode_gap_hours } => {
            format!(
                "Held-out simulated ward: {} patients × {hours} h (seed {seed}, one reading per patient every \
             {seconds_per_reading} s, {episode_rate_per_hour} new episodes per patient-hour): {} readings, {} truly \
             High, {} deterioration episodes ({per_35_days:.1} per 35 patients per day; runs of truly-High readings \
             less than {episode_gap_hours} h apart are one), {:.1} patient-days.",
                ward.patients, ward.readings, ward.truly_high_readings, ward.episodes, ward.patient_days
            )
        }
        WardSource::Recorded { history, events, events_given, events_unobserved } => format!(
            "Recorded history {history} with the events of {events}: {} patients, {} readings over {:.1} \
             patient-days; {events_given} events, {} of them with a reading in the {} h before them \
             ({per_35_days:.1} per 35 patients per day; {events_unobserved} left out: no reading before them), \
             {} readings within {} h before an event.",
            ward.patients,
            ward.readings,
            ward.patient_days,
            ward.episodes,
            report.bootstrap.lookback_hours,
            ward.truly_high_readings,
            report.bootstrap.lookback_hours
        ),
    }
}

/// What makes a reading positive, in words.
fn positive(report: &EvaluationReport) -> String {
    match report.ward.source {
        WardSource::Simulated { .. } => "true label High".to_string(),
        WardSource::Recorded { .. } => format!("an event within {} h after it", report.bootstrap.lookback_hours),
    }
}

/// The report as text tables.
pub fn text(report: &EvaluationReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}", ward_description(report));
    let _ = writeln!(out, "\nAUROC per reading (positive: {}; NULL ranks lowest) [95% bootstrap CI]", positive(report));
    for kind in ScoreKind::ALL {
        let _ = writeln!(
            out,
            "  {:<14} {}",
            kind.title(),
            with_interval(*report.auroc.get(kind), *report.auroc_ci.get(kind))
        );
    }
    let _ = writeln!(
        out,
        "\nAt matched alert rates (alerts per 35 patients per day; rise rule; an alert counts for an episode from \
         {} h before onset to its end) [95% bootstrap CI, thresholds fixed]",
        report.bootstrap.lookback_hours
    );
    let _ = writeln!(
        out,
        "{:>6}  {:<14} {:>10} {:>8} {:>7}  {:<22} {:<22} {:>12}",
        "budget", "score", "threshold", "achieved", "alerts", "episode sensitivity", "PPV per alert", "median lead"
    );
    for matched in &report.matched {
        for kind in ScoreKind::ALL {
            let figures = matched.get(kind);
            let _ = writeln!(
                out,
                "{:>6}  {:<14} {:>10} {:>8} {:>7}  {:<22} {:<22} {:>8} min",
                matched.alerts_per_35_per_day,
                kind.title(),
                threshold(kind, figures),
                number(Some(figures.achieved_rate), 2),
                figures.alerts,
                with_interval(figures.sensitivity, figures.sensitivity_ci),
                with_interval(figures.ppv, figures.ppv_ci),
                number(figures.median_lead_min, 1)
            );
        }
    }
    if any_unreachable(report) {
        let _ = writeln!(out, "{HIGHEST_NOTE}");
    }
    let d = &report.disagreements;
    let _ = writeln!(
        out,
        "\nDisagreements with NEWS2 (readings; share of all readings; of them positive: {})",
        positive(report)
    );
    for (what, row) in [
        ("NEWS2 ≥ 7, model Low or Medium", &d.news2_high_model_not_high),
        ("model High, NEWS2 ≤ 4", &d.model_high_news2_low),
    ] {
        let _ =
            writeln!(out, "  {what:<32} {:>8}  {:>7.3}%  {:>8} positive", row.count, row.share * 100.0, row.truly_high);
    }
    out
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Bar colours per score, in [`ScoreKind::ALL`] order.
const COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#7f7f7f"];

/// The report as a self-contained HTML page: the figures in tables and the sensitivity per score per
/// alert rate as an inline SVG bar chart.
pub fn html(report: &EvaluationReport) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>vitalflow evaluate</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}</style>\
         </head><body>\n<h1>vitalflow evaluate: the model against NEWS2 at matched alert rates</h1>\n\
         <p>{} Alert rates are alerts per 35 patients per day; an alert counts for an episode from {} h before \
         onset to its end; intervals are 95% bootstrap intervals over patients ({} resamples, thresholds fixed).</p>\n",
        escape(&ward_description(report)),
        report.bootstrap.lookback_hours,
        report.bootstrap.resamples
    );
    page.push_str("<h2>AUROC per reading</h2>\n<table><tr><th>score</th><th>AUROC [95% CI]</th></tr>\n");
    for kind in ScoreKind::ALL {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(kind.title()),
            with_interval(*report.auroc.get(kind), *report.auroc_ci.get(kind))
        );
    }
    page.push_str("</table>\n<h2>Episode sensitivity at matched alert rates</h2>\n");
    page.push_str(&sensitivity_chart(report));
    page.push_str(
        "\n<table><tr><th>alerts / 35 patients / day</th><th>score</th><th>threshold</th><th>achieved</th>\
         <th>alerts</th><th>sensitivity [95% CI]</th><th>PPV [95% CI]</th><th>median lead, min</th></tr>\n",
    );
    for matched in &report.matched {
        for kind in ScoreKind::ALL {
            let f = matched.get(kind);
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                matched.alerts_per_35_per_day,
                escape(kind.title()),
                escape(&threshold(kind, f)),
                number(Some(f.achieved_rate), 2),
                f.alerts,
                with_interval(f.sensitivity, f.sensitivity_ci),
                with_interval(f.ppv, f.ppv_ci),
                number(f.median_lead_min, 1)
            );
        }
    }
    page.push_str("</table>\n");
    if any_unreachable(report) {
        let _ = writeln!(page, "<p>{}</p>", escape(HIGHEST_NOTE));
    }
    let d = &report.disagreements;
    page.push_str("<h2>Disagreements with NEWS2</h2>\n<table><tr><th>readings</th><th>count</th><th>share</th><th>positive</th></tr>\n");
    for (what, row) in [
        ("NEWS2 ≥ 7, model Low or Medium", &d.news2_high_model_not_high),
        ("model High, NEWS2 ≤ 4", &d.model_high_news2_low),
    ] {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.3}%</td><td>{}</td></tr>",
            escape(what),
            row.count,
            row.share * 100.0,
            row.truly_high
        );
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

/// Grouped bars: one group per alert rate, one bar per score, height = episode sensitivity.
fn sensitivity_chart(report: &EvaluationReport) -> String {
    const BAR: f64 = 28.0;
    const GAP: f64 = 30.0;
    const PLOT_HEIGHT: f64 = 200.0;
    const LEFT: f64 = 50.0;
    const TOP: f64 = 20.0;
    let group_width = BAR * ScoreKind::ALL.len() as f64 + GAP;
    let width = LEFT + group_width * report.matched.len() as f64 + 160.0;
    let height = TOP + PLOT_HEIGHT + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"Episode sensitivity per score per alert rate\">"
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = TOP + PLOT_HEIGHT * (1.0 - tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" \
             font-size=\"11\" text-anchor=\"end\">{tick:.2}</text>",
            width - 160.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    for (group, matched) in report.matched.iter().enumerate() {
        let x0 = LEFT + GAP / 2.0 + group_width * group as f64;
        for (i, kind) in ScoreKind::ALL.into_iter().enumerate() {
            let sensitivity = matched.get(kind).sensitivity.unwrap_or(0.0).clamp(0.0, 1.0);
            let bar_height = PLOT_HEIGHT * sensitivity;
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{:.1}\" fill=\"{}\"><title>{} at {}: {:.3}</title></rect>",
                x0 + BAR * i as f64,
                TOP + PLOT_HEIGHT - bar_height,
                BAR - 2.0,
                bar_height,
                COLOURS[i],
                escape(kind.title()),
                matched.alerts_per_35_per_day,
                sensitivity
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">{} / 35 / day</text>",
            x0 + BAR * 1.5,
            TOP + PLOT_HEIGHT + 18.0,
            matched.alerts_per_35_per_day
        );
    }
    let legend_x = width - 150.0;
    for (i, kind) in ScoreKind::ALL.into_iter().enumerate() {
        let y = TOP + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{legend_x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" \
             font-size=\"12\">{}</text>",
            COLOURS[i],
            legend_x + 18.0,
            y + 11.0,
            escape(kind.title())
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"12\">episode sensitivity at each alert budget</text></svg>",
        height - 8.0
    );
    svg
}
