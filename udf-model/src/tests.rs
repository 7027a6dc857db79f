//! SQL-level checks of the functions, through a DataFusion context as users call them.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int32Type;
use datafusion::prelude::SessionContext;

use crate::forest::RiskForest;
use crate::rubric::{RiskLevel, SixVitals};
use crate::simulate::training_rows;
use crate::train::evaluate;
use crate::udf::register_all;

fn context() -> SessionContext {
    let mut ctx = SessionContext::new();
    let forest = Arc::new(RiskForest::bundled().expect("the bundled model loads"));
    register_all(&mut ctx, &forest).expect("functions register");
    ctx
}

async fn strings(ctx: &SessionContext, sql: &str) -> Vec<Option<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column(0).as_string::<i32>();
            (0..col.len()).map(|i| col.is_valid(i).then(|| col.value(i).to_string())).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn predict_risk_labels_clear_cases_and_nulls() {
    let ctx = context();
    let got = strings(
        &ctx,
        "SELECT predict_risk(hr, sbp, dbp, spo2, temp, glu) FROM (VALUES \
           (72, 125, 78, 98, 36.8, 100), \
           (150.0, 78, 40, 85, 39.9, 340), \
           (72, 125, 78, NULL, 36.8, 100)) AS t(hr, sbp, dbp, spo2, temp, glu)",
    )
    .await;
    assert_eq!(got, vec![Some("Low".into()), Some("High".into()), None]);
}

#[tokio::test]
async fn last_known_carries_the_last_non_null_value_per_partition_in_window_order() {
    let ctx = context();
    // Rows arrive out of order; the window's ORDER BY decides what "last" is.
    let got = strings(
        &ctx,
        "SELECT concat(p, ':', coalesce(last_known(v) OVER (PARTITION BY p ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), '-'), \
                  ':', coalesce(last_known(v) OVER (PARTITION BY p ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), '-')) \
         FROM (VALUES ('a', 3, NULL), ('a', 1, NULL), ('a', 2, 'x'), ('a', 4, 'y'), ('a', 5, NULL), ('b', 1, NULL)) AS r(p, t, v) \
         ORDER BY p, t",
    )
    .await;
    let want = ["a:-:-", "a:x:-", "a:x:x", "a:y:x", "a:y:y", "b:-:-"];
    assert_eq!(got, want.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_wrongly_typed_argument_is_a_planning_error_naming_it() {
    let ctx = context();
    let err = ctx.sql("SELECT predict_risk('fast', 1, 2, 3, 4, 5)").await.unwrap_err().to_string();
    assert!(err.contains("heart_rate"), "{err}");
    let err = ctx.sql("SELECT predict_risk(1, 2)").await.unwrap_err().to_string();
    assert!(err.contains("6 arguments"), "{err}");
}

#[tokio::test]
async fn news2_and_rubric_scores_in_sql() {
    let ctx = context();
    let batches = ctx
        .sql(
            "SELECT news2_score(26, 93, true, 95, 125, 'V', 39.4), \
                    news2_score(16, 97, false, 125, 72, 'A', 36.7), \
                    news2_score(16, 97, false, 125, 72, 'X', 36.7), \
                    rubric_score(75, 120, 80, 90, 36.8, 100), \
                    news2_score(16, 90, false, 125, 72, 'A', 36.7, 2), \
                    news2_score(16, 90, false, 125, 72, 'A', 36.7, 1), \
                    news2_score(16, 90, false, 125, 72, 'A', 36.7, NULL), \
                    news2_score(16, 97, true, 125, 72, 'A', 36.7, 2), \
                    news2_score(16, 97, true, 125, 72, 'A', 36.7, 3)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &batches[0];
    let int = |c: usize| {
        let a = b.column(c).as_primitive::<Int32Type>();
        a.is_valid(0).then(|| a.value(0))
    };
    assert_eq!([int(0), int(1), int(2), int(3)], [Some(16), Some(0), None, Some(3)]);
    // SpO2 90 % on air: 0 on scale 2, 3 on scale 1 (also when the scale is NULL); 97 % on oxygen on
    // scale 2 is 3 + 2 for the oxygen; a scale other than 1 or 2 scores nothing.
    assert_eq!([int(4), int(5), int(6), int(7), int(8)], [Some(0), Some(3), Some(3), Some(5), None]);
    let version = strings(&ctx, "SELECT model_version()").await;
    assert_eq!(version, vec![Some(RiskForest::bundled().unwrap().version().to_string())]);
}

#[test]
fn the_bundled_model_is_sane_on_fresh_rows() {
    let forest = RiskForest::bundled().unwrap();
    let rows = training_rows(20_000, 4242);
    let (model, rubric) = evaluate(&forest, &rows);
    assert!(model.recall[0] >= 0.9, "High recall {:?}", model.recall);
    assert!(model.accuracy >= 0.9, "accuracy {}", model.accuracy);
    // Sanity of the comparison itself: the rubric on noisy measurements is a strong baseline.
    assert!(rubric.accuracy > 0.85, "rubric accuracy {}", rubric.accuracy);
    // The shipped forest is at least as good as the rubric on what a clinician looks at first (the
    // margin is small, so fresh rows may put it a hair below on either figure: docs/model.md).
    assert!(
        model.recall[0] >= rubric.recall[0] - 0.01,
        "High recall {} vs rubric {}",
        model.recall[0],
        rubric.recall[0]
    );
    assert!(model.macro_f1 >= rubric.macro_f1 - 0.01, "macro-F1 {} vs rubric {}", model.macro_f1, rubric.macro_f1);
    let clear = SixVitals::from_array([150.0, 78.0, 40.0, 85.0, 39.9, 340.0]);
    assert_eq!(forest.predict(&clear.to_array()).map(|p| p.risk), Some(RiskLevel::High));
}

#[tokio::test]
async fn risk_probability_is_a_struct_that_agrees_with_predict_risk() {
    let ctx = context();
    let batches = ctx
        .sql(
            "SELECT risk_probability(hr, sbp, dbp, spo2, temp, glu) AS p, predict_risk(hr, sbp, dbp, spo2, temp, glu) AS r \
             FROM (VALUES (72, 125, 78, 98, 36.8, 100), (150.0, 78, 40, 85, 39.9, 340), (72, 125, 78, 98, 'NaN', 100), \
                          (72, NULL, 78, 98, 36.8, 100)) AS t(hr, sbp, dbp, spo2, temp, glu)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let b = &batches[0];
    let probs = b.column(0).as_struct();
    let risk = b.column(1).as_string::<i32>();
    assert_eq!(probs.column_names(), vec!["High", "Medium", "Low"]);
    for i in 0..2 {
        let p: Vec<f64> =
            (0..3).map(|c| probs.column(c).as_primitive::<arrow::datatypes::Float64Type>().value(i)).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{p:?}");
        let best = (0..3).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
        assert_eq!(RiskLevel::ALL[best].as_str(), risk.value(i));
    }
    // NaN and NULL inputs give NULL out, never an error.
    assert!(probs.is_null(2) && probs.is_null(3) && risk.is_null(2) && risk.is_null(3));
}

#[tokio::test]
async fn explain_risk_adds_up_to_risk_probability_in_sql_and_names_each_input() {
    let ctx = context();
    let sql = "SELECT explain_risk(hr, sbp, dbp, spo2, temp, glu) AS why, \
                      risk_probability(hr, sbp, dbp, spo2, temp, glu)['High'] AS p_high \
               FROM (VALUES (72, 125, 78, 98, 36.8, 100), (126.0, 88, 45, 85, 38.2, 60), \
                            (72, 125, 78, NULL, 36.8, 100)) AS t(hr, sbp, dbp, spo2, temp, glu)";
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let batch = &batches[0];
    let why = batch.column(0).as_struct();
    let names: Vec<&str> = why.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["base", "heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose", "rubric_points"]
    );
    let p_high = batch.column(1).as_primitive::<arrow::datatypes::Float64Type>();
    for row in 0..2 {
        let sum: f64 = (0..why.num_columns())
            .map(|c| why.column(c).as_primitive::<arrow::datatypes::Float64Type>().value(row))
            .sum();
        assert!((sum - p_high.value(row)).abs() < 1e-9, "row {row}: {sum} vs {}", p_high.value(row));
    }
    // The emergency reading is pushed up, mostly by what the rubric sees; a NULL vital explains nothing.
    let rubric = why.column_by_name("rubric_points").unwrap().as_primitive::<arrow::datatypes::Float64Type>();
    assert!(rubric.value(1) > 0.2 && rubric.value(0) < 0.0, "{rubric:?}");
    assert!(why.is_null(2) && p_high.is_null(2));
}
