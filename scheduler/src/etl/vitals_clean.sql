-- vitalflow's continuous ETL: one micro-batch of newly landed `vitals_raw` rows becomes `vitals_clean`
-- rows, `dead_letters` (stage 'etl') and `risk_alerts`. Runs on the Ballista executors.
--
-- Inputs the driver registers for each micro-batch:
--   new_vitals_raw  the batch's `vitals_raw` rows
--   etl_state       each patient's last few clean readings from earlier batches (the columns of
--                   `patient_latest`), so that carry-forward, de-duplication, rolling windows and the
--                   alert rule see across batch boundaries
-- Settings the driver writes into the text before planning (from [etl] in vitalflow.toml, and the model):
--   ${carry_forward_seconds}  how long a patient's last value of a vital stands in for a missing one
--   ${window_readings}        readings in the rolling windows, the current one included
--   ${trend_arguments}        the columns the trend model's file names as its inputs, in order
--   ${score_only_validated}   TRUE when only readings a person validated get a risk (etl.score = "validated")
--
-- The result must hold exactly one row per `new_vitals_raw` row (the driver checks it), with the
-- columns of `vitals_clean` (docs/tables.md) plus:
--   reject_code, reject_reason   NULL for a clean row; otherwise the row goes to `dead_letters`
--   raises_alert                 true when the row is a `risk_alerts` row
--   previous_risk                the patient's risk level before this reading (NULL: none known)
--   <vital>_measured_at          when each carried value was measured (becomes the next state)
-- Edit freely (point `etl.sql_file` at your copy); the driver checks the columns when it starts.
WITH
timeline AS (
  -- The batch's readings, and the patient's recent clean readings before them, with each vital as
  -- measured and when (m_*: NULL when the reading lacks it; a state row brings its carried values
  -- with their own times).
  SELECT patient_id, event_time, FALSE AS from_state, source_topic, source_partition, source_offset,
    CAST(NULL AS VARCHAR) AS state_risk,
    -- Cleaning rules of the reading alone, beyond ingest's possible ranges (which already
    -- dead-lettered impossible values); re-sent copies are found by the pass below.
    CASE
      WHEN diastolic_bp >= systolic_bp THEN 'implausible_value'
      WHEN event_time > ingest_time + INTERVAL '5 minutes' THEN 'future_time'
    END AS row_reject_code,
    heart_rate AS m_heart_rate, CASE WHEN heart_rate IS NOT NULL THEN event_time END AS m_heart_rate_at,
    systolic_bp AS m_systolic_bp, CASE WHEN systolic_bp IS NOT NULL THEN event_time END AS m_systolic_bp_at,
    diastolic_bp AS m_diastolic_bp, CASE WHEN diastolic_bp IS NOT NULL THEN event_time END AS m_diastolic_bp_at,
    spo2 AS m_spo2, CASE WHEN spo2 IS NOT NULL THEN event_time END AS m_spo2_at,
    temperature AS m_temperature, CASE WHEN temperature IS NOT NULL THEN event_time END AS m_temperature_at,
    glucose AS m_glucose, CASE WHEN glucose IS NOT NULL THEN event_time END AS m_glucose_at,
    respiratory_rate AS m_respiratory_rate, CASE WHEN respiratory_rate IS NOT NULL THEN event_time END AS m_respiratory_rate_at,
    on_oxygen AS m_on_oxygen, CASE WHEN on_oxygen IS NOT NULL THEN event_time END AS m_on_oxygen_at,
    consciousness AS m_consciousness, CASE WHEN consciousness IS NOT NULL THEN event_time END AS m_consciousness_at,
    -- What the record says of the reading itself (never carried forward): its ward, whether a person
    -- validated it (NULL in rows landed before the column: a device's), its NEWS2 SpO2 scale (NULL: 1).
    ward, coalesce(validated, FALSE) AS validated, spo2_scale
  FROM new_vitals_raw
  UNION ALL
  SELECT patient_id, event_time, TRUE, source_topic, source_partition, source_offset,
    risk AS state_risk, CAST(NULL AS VARCHAR) AS row_reject_code,
    heart_rate AS m_heart_rate, heart_rate_measured_at AS m_heart_rate_at,
    systolic_bp AS m_systolic_bp, systolic_bp_measured_at AS m_systolic_bp_at,
    diastolic_bp AS m_diastolic_bp, diastolic_bp_measured_at AS m_diastolic_bp_at,
    spo2 AS m_spo2, spo2_measured_at AS m_spo2_at,
    temperature AS m_temperature, temperature_measured_at AS m_temperature_at,
    glucose AS m_glucose, glucose_measured_at AS m_glucose_at,
    respiratory_rate AS m_respiratory_rate, respiratory_rate_measured_at AS m_respiratory_rate_at,
    on_oxygen AS m_on_oxygen, on_oxygen_measured_at AS m_on_oxygen_at,
    consciousness AS m_consciousness, consciousness_measured_at AS m_consciousness_at,
    ward, CAST(NULL AS BOOLEAN) AS validated, CAST(NULL AS INT) AS spo2_scale
  FROM etl_state
),
history AS (
  -- One ordered pass over each patient's readings (vitalflow's patient_history, docs/etl.md):
  --   h['reject_code']           'duplicate' for a re-sent copy (same patient, time and values as an
  --                              earlier batch's reading, else as one lower in source position), else
  --                              the row's own rule; a rejected row keeps its values as landed (no
  --                              measured-at times, no features) and takes no part in what follows
  --   h['<vital>'], h['<vital>_measured_at']
  --                              each vital's last measured value, carried for carry_forward_seconds
  --   h['<vital>_rolling_mean'], h['<vital>_change']
  --                              over the last window_readings clean readings, earlier batches' included
  SELECT t.patient_id, t.event_time, t.from_state, t.source_topic, t.source_partition, t.source_offset, t.state_risk,
    t.ward, t.validated, t.spo2_scale,
    patient_history(patient_id, event_time, from_state, row_reject_code,
        m_heart_rate, m_heart_rate_at,
        m_systolic_bp, m_systolic_bp_at,
        m_diastolic_bp, m_diastolic_bp_at,
        m_spo2, m_spo2_at,
        m_temperature, m_temperature_at,
        m_glucose, m_glucose_at,
        m_respiratory_rate, m_respiratory_rate_at,
        m_on_oxygen, m_on_oxygen_at,
        m_consciousness, m_consciousness_at,
        ${carry_forward_seconds}, ${window_readings})
      OVER (ORDER BY patient_id, event_time, from_state DESC, source_topic, source_partition, source_offset) AS h
  FROM timeline t
),
judged AS (
  SELECT patient_id, event_time, from_state, source_topic, source_partition, source_offset, state_risk,
    ward, validated, spo2_scale,
    h['reject_code'] AS reject_code,
    CASE h['reject_code']
      WHEN 'duplicate' THEN concat('duplicate of an earlier reading of patient ', patient_id, ' at ', CAST(event_time AS VARCHAR))
      WHEN 'implausible_value' THEN concat('diastolic_bp ', CAST(h['diastolic_bp'] AS VARCHAR), ' is not below systolic_bp ', CAST(h['systolic_bp'] AS VARCHAR))
      WHEN 'future_time' THEN concat('event_time ', CAST(event_time AS VARCHAR), ' is more than 5 minutes after it was ingested')
    END AS reject_reason,
    h['heart_rate'] AS heart_rate, h['heart_rate_measured_at'] AS heart_rate_measured_at,
    h['systolic_bp'] AS systolic_bp, h['systolic_bp_measured_at'] AS systolic_bp_measured_at,
    h['diastolic_bp'] AS diastolic_bp, h['diastolic_bp_measured_at'] AS diastolic_bp_measured_at,
    h['spo2'] AS spo2, h['spo2_measured_at'] AS spo2_measured_at,
    h['temperature'] AS temperature, h['temperature_measured_at'] AS temperature_measured_at,
    h['glucose'] AS glucose, h['glucose_measured_at'] AS glucose_measured_at,
    h['respiratory_rate'] AS respiratory_rate, h['respiratory_rate_measured_at'] AS respiratory_rate_measured_at,
    h['on_oxygen'] AS on_oxygen, h['on_oxygen_measured_at'] AS on_oxygen_measured_at,
    h['consciousness'] AS consciousness, h['consciousness_measured_at'] AS consciousness_measured_at,
    h['heart_rate_rolling_mean'] AS heart_rate_rolling_mean, h['heart_rate_change'] AS heart_rate_change,
    h['systolic_bp_rolling_mean'] AS systolic_bp_rolling_mean, h['systolic_bp_change'] AS systolic_bp_change,
    h['diastolic_bp_rolling_mean'] AS diastolic_bp_rolling_mean, h['diastolic_bp_change'] AS diastolic_bp_change,
    h['spo2_rolling_mean'] AS spo2_rolling_mean, h['spo2_change'] AS spo2_change,
    h['temperature_rolling_mean'] AS temperature_rolling_mean, h['temperature_change'] AS temperature_change,
    h['glucose_rolling_mean'] AS glucose_rolling_mean, h['glucose_change'] AS glucose_change,
    h['respiratory_rate_rolling_mean'] AS respiratory_rate_rolling_mean, h['respiratory_rate_change'] AS respiratory_rate_change
  FROM history
),
unscored AS (
  -- With etl.score = "validated", a reading no person validated is kept clean but not scored.
  SELECT j.*, reject_code IS NULL AND NOT from_state AND ${score_only_validated} AND NOT validated AS not_validated
  FROM judged j
),
scored AS (
  -- The trend model scores each clean reading with its features (${trend_arguments}: the inputs its
  -- model file names); a state row keeps the risk it was given; a rejected or unscored row has none.
  SELECT u.*,
    CASE WHEN reject_code IS NOT NULL OR not_validated THEN NULL WHEN from_state THEN state_risk ELSE predict_trend_risk(${trend_arguments}) END AS risk,
    CASE WHEN reject_code IS NULL AND NOT not_validated THEN trend_risk_probability(${trend_arguments}) END AS probabilities
  FROM unscored u
),
previous AS (
  -- The risk before this reading (the alert rule's "rises to High"): the patient's last clean one.
  SELECT s.*,
    patient_previous(patient_id, risk)
      OVER (ORDER BY patient_id, event_time, from_state DESC, source_topic, source_partition, source_offset) AS previous_risk
  FROM scored s
),
output AS (
  -- One row per batch row: clean ones with their risk and features, rejected ones (reject_code) with
  -- their values as landed, which the driver writes to dead_letters.
  SELECT patient_id, event_time,
    heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, on_oxygen, consciousness,
    risk,
    CASE WHEN reject_code IS NULL THEN rubric_score(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) END AS rubric_score,
    CASE WHEN reject_code IS NULL THEN news2_score(respiratory_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature, spo2_scale) END AS news2_score,
    model_version() AS model_version,
    source_topic, source_partition, source_offset,
    -- P(High) as the share of such readings truly High (the model file's calibration); the forest's
    -- own, which explanations add up to, beside it.
    calibrated_probability_high(probabilities['High']) AS probability_high,
    probabilities['Medium'] AS probability_medium,
    probabilities['Low'] AS probability_low,
    probabilities['High'] AS forest_probability_high,
    heart_rate_rolling_mean, heart_rate_change, systolic_bp_rolling_mean, systolic_bp_change,
    diastolic_bp_rolling_mean, diastolic_bp_change, spo2_rolling_mean, spo2_change,
    temperature_rolling_mean, temperature_change, glucose_rolling_mean, glucose_change,
    respiratory_rate_rolling_mean, respiratory_rate_change,
    -- Anomaly: a sudden move within the window that a clinician would want to see, whatever the risk.
    abs(heart_rate_change) >= 25 OR abs(systolic_bp_change) >= 30 OR spo2_change <= -5
      OR abs(temperature_change) >= 1.0 OR abs(respiratory_rate_change) >= 8 OR abs(glucose_change) >= 80 AS anomaly,
    ward, validated, spo2_scale,
    CASE WHEN not_validated THEN 'not_validated' END AS unscored_reason,
    reject_code, reject_reason,
    -- DESIGN's alert rule: risk rises to High from a lower level or from no earlier reading.
    reject_code IS NULL AND risk = 'High' AND (previous_risk IS NULL OR previous_risk <> 'High') AS raises_alert,
    CASE WHEN reject_code IS NULL THEN previous_risk END AS previous_risk,
    heart_rate_measured_at, systolic_bp_measured_at, diastolic_bp_measured_at, spo2_measured_at,
    temperature_measured_at, glucose_measured_at, respiratory_rate_measured_at, on_oxygen_measured_at,
    consciousness_measured_at
  FROM previous
  WHERE NOT from_state
)
SELECT * FROM output
