//! Tests of the evaluation: AUROC with ties, the rise rule, episode windows, matched thresholds, the
//! bootstrap, the JSON keys, and one tiny simulated ward end to end.

use super::alerts::{
    Episode, ThresholdAlerts, alert_rate, alerts_per_threshold, closest_threshold, episodes, median, patient_outcome,
    rise_alerts,
};
use super::auroc::{RankedScores, auroc, distinct_values};
use super::bootstrap::{PatientResampler, percentile_interval, weighted_share};
use super::report::WardSource;
use super::scores::{LabelledReading, ScoreKind, patient_histories};
use super::ward::{SimulatedWard, WardSettings};
use super::*;
use crate::forest::RiskForest;

#[test]
fn evaluate_auroc_matches_a_hand_computed_case_with_ties_and_nulls() {
    // Positives 0.8, 0.5, NULL; negatives 0.5, 0.2, NULL, 0.1: 12 pairs.
    // 0.8 beats all 4 negatives (4); 0.5 ties one and beats 3 (3.5); NULL ties the NULL (0.5): 8 / 12.
    let readings = [
        (Some(0.8), true),
        (Some(0.5), true),
        (None, true),
        (Some(0.5), false),
        (Some(0.2), false),
        (None, false),
        (Some(0.1), false),
    ];
    let value = auroc(&readings).unwrap();
    assert!((value - 8.0 / 12.0).abs() < 1e-12, "{value}");
    // Perfect, reversed and constant scores.
    assert_eq!(auroc(&[(Some(2.0), true), (Some(1.0), false)]), Some(1.0));
    assert_eq!(auroc(&[(Some(1.0), true), (Some(2.0), false)]), Some(0.0));
    assert_eq!(auroc(&[(Some(1.0), true), (Some(1.0), false)]), Some(0.5));
    assert_eq!(auroc(&[(Some(1.0), true)]), None, "no negative: no AUROC");
}

#[test]
fn evaluate_auroc_split_across_patients_equals_pooled() {
    let scores = vec![vec![Some(0.8), Some(0.5), None], vec![Some(0.5), Some(0.2), None, Some(0.1)]];
    let labels = vec![vec![true, true, true], vec![false, false, false, false]];
    let ranked = RankedScores::new(&scores, &labels);
    assert!((ranked.auroc().unwrap() - 8.0 / 12.0).abs() < 1e-12);
    // A resample drawing the first patient twice and the second once changes nothing in a ratio of pairs.
    assert!((ranked.weighted_auroc(&[2.0, 1.0]).unwrap() - 8.0 / 12.0).abs() < 1e-12);
    assert_eq!(ranked.weighted_auroc(&[1.0, 0.0]), None, "positives only");
}

#[test]
fn evaluate_rise_rule_fires_on_crossings_only() {
    let scores = [Some(0.1), Some(0.6), Some(0.7), Some(0.2), Some(0.8)];
    assert_eq!(rise_alerts(&scores, 0.5), vec![1, 4]);
    // A first reading at or above alerts; after a NULL the next one at or above alerts again; NULL never alerts.
    let with_nulls = [Some(0.6), None, Some(0.7), Some(0.7), None, None];
    assert_eq!(rise_alerts(&with_nulls, 0.5), vec![0, 2]);
    // Equal to the threshold is at or above it.
    assert_eq!(rise_alerts(&[Some(0.4), Some(0.5)], 0.5), vec![1]);
}

#[test]
fn evaluate_alert_counts_per_threshold_match_the_rise_rule() {
    let scores = vec![
        vec![Some(0.1), Some(0.6), Some(0.7), Some(0.2), Some(0.8)],
        vec![Some(0.6), None, Some(0.7), Some(0.7), Some(0.1), Some(0.9)],
        vec![None, None],
    ];
    let values = distinct_values(scores.iter().flatten());
    let counts = alerts_per_threshold(&scores, &values);
    assert_eq!(counts.len(), values.len());
    for ThresholdAlerts { threshold, alerts } in counts {
        let expected: usize = scores.iter().map(|s| rise_alerts(s, threshold).len()).sum();
        assert_eq!(alerts, expected as u64, "threshold {threshold}");
    }
}

#[test]
fn evaluate_episodes_are_maximal_runs_of_true_high() {
    let times = [0.0, 300.0, 600.0, 900.0, 1_200.0, 1_500.0];
    let high = [false, true, true, false, true, true];
    assert_eq!(
        episodes(&times, &high, 0.0),
        vec![Episode { onset: 300.0, end: 600.0 }, Episode { onset: 1_200.0, end: 1_500.0 }]
    );
    assert!(episodes(&times, &[false; 6], 0.0).is_empty());
    // The second run starts 600 s after the first ended: joined under a longer gap, apart at exactly 600.
    assert_eq!(episodes(&times, &high, 601.0), vec![Episode { onset: 300.0, end: 1_500.0 }]);
    assert_eq!(episodes(&times, &high, 600.0).len(), 2);
}

#[test]
fn evaluate_episode_window_reaches_six_hours_before_onset() {
    // A reading every 5 minutes for 20 hours; one episode from 12 h to 13 h.
    let times: Vec<f64> = (0..240).map(|i| f64::from(i) * 300.0).collect();
    let hour = |h: f64| (h * 12.0) as usize;
    let episode = [Episode { onset: 12.0 * 3_600.0, end: 13.0 * 3_600.0 }];
    let lookback = 6.0 * 3_600.0;

    let five_hours_before = patient_outcome(&times, &[hour(7.0)], &episode, lookback);
    assert_eq!((five_hours_before.caught_episodes, five_hours_before.true_alerts), (1, 1));
    assert_eq!(five_hours_before.lead_minutes, vec![300.0], "positive lead: before onset");

    let seven_hours_before = patient_outcome(&times, &[hour(5.0)], &episode, lookback);
    assert_eq!((seven_hours_before.caught_episodes, seven_hours_before.true_alerts), (0, 0));
    assert_eq!(seven_hours_before.alerts, 1);

    let after_onset = patient_outcome(&times, &[hour(12.5)], &episode, lookback);
    assert_eq!(after_onset.lead_minutes, vec![-30.0], "negative lead: after onset");
    let after_end = patient_outcome(&times, &[hour(13.5)], &episode, lookback);
    assert_eq!(after_end.caught_episodes, 0);

    // The first alert in the window sets the lead time; an alert before the window is a false one.
    let several = patient_outcome(&times, &[hour(2.0), hour(9.0), hour(11.0)], &episode, lookback);
    assert_eq!((several.alerts, several.true_alerts, several.caught_episodes), (3, 2, 1));
    assert_eq!(several.lead_minutes, vec![180.0]);
    assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
}

#[test]
fn evaluate_matched_threshold_picks_the_closest_rate() {
    let candidates = [
        ThresholdAlerts { threshold: 1.0, alerts: 100 },
        ThresholdAlerts { threshold: 2.0, alerts: 50 },
        ThresholdAlerts { threshold: 3.0, alerts: 20 },
        ThresholdAlerts { threshold: 4.0, alerts: 5 },
    ];
    // 35 patient-days: the rate per 35 patients per day is the alert count.
    let days = 35.0;
    assert_eq!(alert_rate(20, days), 20.0);
    assert_eq!(closest_threshold(&candidates, days, 22.0).unwrap().threshold, 3.0);
    assert_eq!(closest_threshold(&candidates, days, 1.0).unwrap().threshold, 4.0);
    assert_eq!(closest_threshold(&candidates, days, 500.0).unwrap().threshold, 1.0);
    // 35 is 15 from both 50 and 20: the higher threshold, which alerts less.
    assert_eq!(closest_threshold(&candidates, days, 35.0).unwrap().threshold, 3.0);
    assert_eq!(closest_threshold(&[], days, 1.0), None);
}

#[test]
fn evaluate_bootstrap_interval_contains_the_point_estimate() {
    // 300 patients with uneven episode and caught counts.
    let episodes: Vec<u32> = (0..300).map(|i| 1 + i % 4).collect();
    let caught: Vec<u32> = episodes.iter().enumerate().map(|(i, e)| if i % 3 == 0 { 0 } else { *e / 2 + 1 }).collect();
    let point = weighted_share(&vec![1.0; 300], &caught, &episodes).unwrap();
    let mut resampler = PatientResampler::new(300, 2026);
    let estimates: Vec<Option<f64>> =
        (0..200).map(|_| weighted_share(&resampler.next_weights(), &caught, &episodes)).collect();
    let [lo, hi] = percentile_interval(&estimates, 0.95).unwrap();
    assert!(lo <= point && point <= hi && lo < hi, "{lo} {point} {hi}");
    // Each resample draws as many patients as there are.
    assert_eq!(PatientResampler::new(300, 1).next_weights().iter().sum::<f64>(), 300.0);
    // Percentiles are linear between order statistics; resamples without a figure are left out.
    let values: Vec<Option<f64>> = (0..=100).map(|v| Some(f64::from(v))).chain([None]).collect();
    let [lo, hi] = percentile_interval(&values, 0.95).unwrap();
    assert!((lo - 2.5).abs() < 1e-9 && (hi - 97.5).abs() < 1e-9, "{lo} {hi}");
    assert_eq!(percentile_interval(&[None], 0.95), None);
}

/// The evaluation of a tiny ward: 40 patients for 12 hours, a reading every 5 minutes.
fn tiny_ward_report() -> (WardSettings, EvaluationReport) {
    let forest = RiskForest::bundled().unwrap();
    let ward = WardSettings { patients: 40, hours: 12.0, ..WardSettings::default() };
    let options = EvaluationOptions { resamples: 50, ..EvaluationOptions::default() };
    (ward, evaluate_simulated_ward(&forest, &ward, &options).unwrap())
}

#[test]
fn evaluate_simulated_ward_spaces_each_patients_readings() {
    let ward = WardSettings { patients: 3, hours: 1.0, ..WardSettings::default() };
    let readings: Vec<_> = SimulatedWard::new(&ward).collect();
    assert_eq!(readings.len(), 3 * 12);
    let first: Vec<&str> =
        readings.iter().filter(|r| r.record.patient_id == "P001").map(|r| r.record.timestamp.as_str()).collect();
    assert_eq!(first.len(), 12);
    assert_eq!(first[0], "2026-12-01T00:00:00.000Z");
    assert_eq!(first[1], "2026-12-01T00:05:00.000Z");
    assert!(WardSettings { patients: 0, ..ward }.validate().is_err());
    assert!(WardSettings { hours: 0.01, ..ward }.validate().is_err(), "no whole reading interval");
    let no_budget = EvaluationOptions { alert_rates: vec![], ..EvaluationOptions::default() };
    assert!(no_budget.validate().unwrap_err().to_string().contains("--alert-rates"));
}

#[test]
fn evaluate_tiny_ward_end_to_end_is_consistent() {
    let (ward, report) = tiny_ward_report();
    let w = &report.ward;
    assert_eq!((w.patients, w.readings), (40, 40 * 144));
    assert!((w.patient_days - 40.0 * 0.5).abs() < 1e-6, "{}", w.patient_days);
    assert!(w.episodes > 0, "the ward has deterioration episodes");
    assert!(matches!(w.source, WardSource::Simulated { seed, .. } if seed == ward.seed), "{:?}", w.source);
    let one_alert = 35.0 / w.patient_days;
    for kind in ScoreKind::ALL {
        let value = report.auroc.get(kind).unwrap();
        assert!((0.5..=1.0).contains(&value), "{kind:?} AUROC {value}");
        let [lo, hi] = report.auroc_ci.get(kind).unwrap();
        assert!(lo <= hi && (0.0..=1.0).contains(&lo) && hi <= 1.0);
    }
    assert_eq!(report.matched.len(), 4);
    for matched in &report.matched {
        for kind in ScoreKind::ALL {
            let f = matched.get(kind);
            assert!((f.achieved_rate - alert_rate(f.alerts, w.patient_days)).abs() < 1e-9);
            for share in [f.sensitivity, f.ppv].into_iter().flatten() {
                assert!((0.0..=1.0).contains(&share), "{kind:?} {share}");
            }
            assert!(f.caught_episodes <= w.episodes);
        }
        // Each score lands within a couple of alerts of the budget on this small ward, or the budget is
        // below every rate it reaches (then its highest threshold, which alerts least, is taken).
        let target = matched.alerts_per_35_per_day;
        for kind in ScoreKind::ALL {
            let f = matched.get(kind);
            assert!(
                (f.achieved_rate - target).abs() <= (2.0 * one_alert).max(0.25 * target) || f.budget_unreachable,
                "{kind:?}: target {target}, achieved {}",
                f.achieved_rate
            );
        }
    }
    let d = &report.disagreements;
    for row in [&d.news2_high_model_not_high, &d.model_high_news2_low] {
        assert!((row.share - row.count as f64 / w.readings as f64).abs() < 1e-12);
        assert!(row.truly_high <= row.count);
    }
    let text = render::text(&report);
    assert!(text.contains("AUROC") && text.contains("NEWS2") && text.contains("Disagreements"), "{text}");
    let html = render::html(&report);
    assert!(html.contains("<svg") && html.contains("<table") && !html.contains("<script"), "{html}");
}

#[test]
fn evaluate_json_has_the_documented_keys() {
    let (_, report) = tiny_ward_report();
    let json: serde_json::Value = serde_json::from_str(&render::json(&report).unwrap()).unwrap();
    for kind in ["model", "news2", "rubric"] {
        assert!(json["auroc"][kind].is_f64(), "auroc.{kind}");
        assert!(json["auroc_ci"][kind].as_array().is_some_and(|ci| ci.len() == 2), "auroc_ci.{kind}");
    }
    let matched = json["matched"].as_array().unwrap();
    let budgets: Vec<f64> = matched.iter().map(|m| m["alerts_per_35_per_day"].as_f64().unwrap()).collect();
    assert_eq!(budgets, vec![0.5, 1.0, 2.0, 4.0]);
    for m in matched {
        for kind in ["model", "news2", "rubric"] {
            let figures = m[kind].as_object().unwrap();
            for key in
                ["threshold", "achieved_rate", "sensitivity", "sensitivity_ci", "ppv", "ppv_ci", "median_lead_min"]
            {
                assert!(figures.contains_key(key), "matched.{kind}.{key}");
            }
        }
    }
    for key in ["news2_high_model_not_high", "model_high_news2_low"] {
        assert!(json["disagreements"][key]["count"].is_u64(), "disagreements.{key}");
        assert!(json["disagreements"][key]["share"].is_f64(), "disagreements.{key}");
    }
    for key in ["patients", "readings", "episodes", "patient_days"] {
        assert!(!json["ward"][key].is_null(), "ward.{key}");
    }
    assert_eq!(json["ward"]["source"]["kind"], "simulated");
    for key in ["hours", "seed", "seconds_per_reading", "episode_rate_per_hour", "episode_gap_hours"] {
        assert!(!json["ward"]["source"][key].is_null(), "ward.source.{key}");
    }
}

/// A recorded reading of `patient` at `minutes` past midnight with the given heart rate and the other
/// vitals normal (NEWS2 of the heart rate alone).
fn recorded(patient: &str, minutes: f64, heart_rate: f64) -> LabelledReading {
    let record = crate::simulate::VitalsRecord {
        patient_id: patient.to_string(),
        timestamp: String::new(),
        heart_rate: Some(heart_rate),
        systolic_bp: Some(125.0),
        diastolic_bp: Some(80.0),
        spo2: Some(98.0),
        temperature: Some(37.0),
        glucose: Some(100.0),
        respiratory_rate: Some(16.0),
        on_oxygen: Some(false),
        consciousness: Some("A".to_string()),
    };
    LabelledReading { record, seconds: minutes * 60.0, truly_high: false }
}

#[test]
fn evaluate_recorded_events_label_the_readings_before_them_and_unobserved_ones_are_left_out() {
    use super::events::{RecordedEvent, label_by_events};
    let forest = RiskForest::bundled().unwrap();
    let readings = (0..10).map(|i| recorded("A", f64::from(i) * 60.0, 70.0)).collect::<Vec<_>>();
    let mut histories = patient_histories(&forest, readings);
    let events = [
        // At 5 h: readings at 0..=5 h are within the 6 h before it.
        RecordedEvent { patient_id: "A".into(), seconds: 5.0 * 3_600.0 },
        RecordedEvent { patient_id: "A".into(), seconds: 5.0 * 3_600.0 },
        // Long after the last reading (9 h): no reading in its window.
        RecordedEvent { patient_id: "A".into(), seconds: 20.0 * 3_600.0 },
        // A patient with no readings.
        RecordedEvent { patient_id: "B".into(), seconds: 3_600.0 },
    ];
    let labels = label_by_events(&mut histories, &events, 6.0 * 3_600.0);
    assert_eq!((labels.events, labels.unobserved), (3, 2), "a duplicate is one event");
    assert_eq!(labels.episodes, vec![vec![Episode { onset: 18_000.0, end: 18_000.0 }]]);
    let positive: Vec<bool> = histories[0].readings.iter().map(|r| r.truly_high).collect();
    assert_eq!(positive, [true, true, true, true, true, true, false, false, false, false]);
}

#[test]
fn evaluate_recorded_history_counts_an_alert_before_an_event_with_its_lead_time() {
    // Patient A's heart rate rises to 135 (NEWS2 3) two hours before an event; B stays at 70 (NEWS2 0).
    let forest = RiskForest::bundled().unwrap();
    let mut readings = Vec::new();
    for hour in 0..24 {
        let minutes = f64::from(hour) * 60.0;
        readings.push(recorded("A", minutes, if (10..=12).contains(&hour) { 135.0 } else { 70.0 }));
        readings.push(recorded("B", minutes, 70.0));
    }
    let events = [super::events::RecordedEvent { patient_id: "A".into(), seconds: 12.0 * 3_600.0 }];
    let options = EvaluationOptions { alert_rates: vec![35.0 / 2.0], resamples: 20, ..EvaluationOptions::default() };
    let report = evaluate_recorded(&forest, readings, &events, "history.parquet", "events.csv", &options).unwrap();
    let w = &report.ward;
    assert_eq!((w.patients, w.readings, w.episodes), (2, 48, 1));
    assert!(matches!(&w.source, WardSource::Recorded { events_given: 1, events_unobserved: 0, .. }), "{:?}", w.source);
    // One alert over two patient-days is the budget: NEWS2 ≥ 3 fires once, at 10 h, 120 minutes before the event.
    let news2 = &report.matched[0].news2;
    assert_eq!((news2.threshold, news2.alerts, news2.caught_episodes), (Some(3.0), 1, 1));
    assert_eq!((news2.sensitivity, news2.ppv, news2.median_lead_min), (Some(1.0), Some(1.0), Some(120.0)));
    // Positive: the 7 readings from 6 h to 12 h; 3 of them score 3, the other 45 readings 0: (3 + 4 / 2) / 7.
    assert!((report.auroc.news2.unwrap() - 5.0 / 7.0).abs() < 1e-12, "{:?}", report.auroc.news2);
    assert!(render::text(&report).contains("Recorded history history.parquet with the events of events.csv"));
}
