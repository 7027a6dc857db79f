-- The reference of `vitalflow-bench etl`: the ETL SQL as it was before the one-pass functions
-- (patient_history, patient_previous), with a window per patient for de-duplication, carry-forward, the
-- rolling features and the previous risk. Not used by the product; kept to measure against and to
-- check that the shipped SQL gives the same rows.
--
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
--   ${window_preceding}       readings before the current one in the rolling windows (window_readings - 1)
--   ${trend_arguments}        the columns the trend model's file names as its inputs, in order
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
  -- The batch's readings, and the patient's recent clean readings before them.
  SELECT patient_id, event_time, FALSE AS from_state, source_topic, source_partition, source_offset, ingest_time,
    heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, on_oxygen, consciousness,
    CAST(NULL AS VARCHAR) AS state_risk,
    -- Each vital as measured, and when (NULL when the reading lacks it): what carry-forward carries.
    heart_rate AS m_heart_rate, CASE WHEN heart_rate IS NOT NULL THEN event_time END AS m_heart_rate_at,
    systolic_bp AS m_systolic_bp, CASE WHEN systolic_bp IS NOT NULL THEN event_time END AS m_systolic_bp_at,
    diastolic_bp AS m_diastolic_bp, CASE WHEN diastolic_bp IS NOT NULL THEN event_time END AS m_diastolic_bp_at,
    spo2 AS m_spo2, CASE WHEN spo2 IS NOT NULL THEN event_time END AS m_spo2_at,
    temperature AS m_temperature, CASE WHEN temperature IS NOT NULL THEN event_time END AS m_temperature_at,
    glucose AS m_glucose, CASE WHEN glucose IS NOT NULL THEN event_time END AS m_glucose_at,
    respiratory_rate AS m_respiratory_rate, CASE WHEN respiratory_rate IS NOT NULL THEN event_time END AS m_respiratory_rate_at,
    on_oxygen AS m_on_oxygen, CASE WHEN on_oxygen IS NOT NULL THEN event_time END AS m_on_oxygen_at,
    consciousness AS m_consciousness, CASE WHEN consciousness IS NOT NULL THEN event_time END AS m_consciousness_at
  FROM new_vitals_raw
  UNION ALL
  -- A state row's vitals as they were measured at its own time (carried ones are NULL here), so
  -- that a re-sent reading compares equal below.
  SELECT patient_id, event_time, TRUE, source_topic, source_partition, source_offset, NULL,
    CASE WHEN heart_rate_measured_at = event_time THEN heart_rate END AS heart_rate,
    CASE WHEN systolic_bp_measured_at = event_time THEN systolic_bp END AS systolic_bp,
    CASE WHEN diastolic_bp_measured_at = event_time THEN diastolic_bp END AS diastolic_bp,
    CASE WHEN spo2_measured_at = event_time THEN spo2 END AS spo2,
    CASE WHEN temperature_measured_at = event_time THEN temperature END AS temperature,
    CASE WHEN glucose_measured_at = event_time THEN glucose END AS glucose,
    CASE WHEN respiratory_rate_measured_at = event_time THEN respiratory_rate END AS respiratory_rate,
    CASE WHEN on_oxygen_measured_at = event_time THEN on_oxygen END AS on_oxygen,
    CASE WHEN consciousness_measured_at = event_time THEN consciousness END AS consciousness,
    risk AS state_risk,
    heart_rate AS m_heart_rate, heart_rate_measured_at AS m_heart_rate_at,
    systolic_bp AS m_systolic_bp, systolic_bp_measured_at AS m_systolic_bp_at,
    diastolic_bp AS m_diastolic_bp, diastolic_bp_measured_at AS m_diastolic_bp_at,
    spo2 AS m_spo2, spo2_measured_at AS m_spo2_at,
    temperature AS m_temperature, temperature_measured_at AS m_temperature_at,
    glucose AS m_glucose, glucose_measured_at AS m_glucose_at,
    respiratory_rate AS m_respiratory_rate, respiratory_rate_measured_at AS m_respiratory_rate_at,
    on_oxygen AS m_on_oxygen, on_oxygen_measured_at AS m_on_oxygen_at,
    consciousness AS m_consciousness, consciousness_measured_at AS m_consciousness_at
  FROM etl_state
),
checked AS (
  -- De-duplication: the same patient, time and values again (a re-sent record) is a duplicate of the
  -- first copy (an earlier batch's, else the lowest source position). Two different readings
  -- stamped the same time are both kept. Sorted by time and values, copies are neighbours: a row is a
  -- copy when the row before it has the same time and values. (One window per patient: a window
  -- partitioned by the values would be one partition per reading, which costs far more.)
  SELECT t.*,
    CASE WHEN (lag(event_time) OVER d IS NOT DISTINCT FROM event_time)
      AND (lag(heart_rate) OVER d IS NOT DISTINCT FROM heart_rate)
      AND (lag(systolic_bp) OVER d IS NOT DISTINCT FROM systolic_bp)
      AND (lag(diastolic_bp) OVER d IS NOT DISTINCT FROM diastolic_bp)
      AND (lag(spo2) OVER d IS NOT DISTINCT FROM spo2)
      AND (lag(temperature) OVER d IS NOT DISTINCT FROM temperature)
      AND (lag(glucose) OVER d IS NOT DISTINCT FROM glucose)
      AND (lag(respiratory_rate) OVER d IS NOT DISTINCT FROM respiratory_rate)
      AND (lag(on_oxygen) OVER d IS NOT DISTINCT FROM on_oxygen)
      AND (lag(consciousness) OVER d IS NOT DISTINCT FROM consciousness)
      AND row_number() OVER d > 1 THEN 2 ELSE 1 END AS copy_no
  FROM timeline t
  WINDOW d AS (PARTITION BY patient_id ORDER BY event_time, heart_rate, systolic_bp, diastolic_bp, spo2, temperature,
               glucose, respiratory_rate, on_oxygen, consciousness, from_state DESC, source_topic, source_partition, source_offset)
),
judged AS (
  -- Cleaning rules beyond ingest's possible ranges (which already dead-lettered impossible values).
  SELECT c.*,
    CASE
      WHEN from_state THEN NULL
      WHEN copy_no > 1 THEN 'duplicate'
      WHEN diastolic_bp >= systolic_bp THEN 'implausible_value'
      WHEN event_time > ingest_time + INTERVAL '5 minutes' THEN 'future_time'
    END AS reject_code,
    CASE
      WHEN from_state THEN NULL
      WHEN copy_no > 1 THEN concat('duplicate of an earlier reading of patient ', patient_id, ' at ', CAST(event_time AS VARCHAR))
      WHEN diastolic_bp >= systolic_bp THEN concat('diastolic_bp ', CAST(diastolic_bp AS VARCHAR), ' is not below systolic_bp ', CAST(systolic_bp AS VARCHAR))
      WHEN event_time > ingest_time + INTERVAL '5 minutes' THEN concat('event_time ', CAST(event_time AS VARCHAR), ' is more than 5 minutes after it was ingested')
    END AS reject_reason
  FROM checked c
),
clean_timeline AS (
  -- Carry-forward: each vital's last measured value and when it was measured, over the patient's
  -- clean readings in time order (a state row brings its own carried values and times).
  -- last_known(v) is last_value(v) IGNORE NULLS, which the cluster cannot run (docs/etl.md).
  SELECT j.*,
    last_known(m_heart_rate) OVER w AS c_heart_rate, last_known(m_heart_rate_at) OVER w AS c_heart_rate_at,
    last_known(m_systolic_bp) OVER w AS c_systolic_bp, last_known(m_systolic_bp_at) OVER w AS c_systolic_bp_at,
    last_known(m_diastolic_bp) OVER w AS c_diastolic_bp, last_known(m_diastolic_bp_at) OVER w AS c_diastolic_bp_at,
    last_known(m_spo2) OVER w AS c_spo2, last_known(m_spo2_at) OVER w AS c_spo2_at,
    last_known(m_temperature) OVER w AS c_temperature, last_known(m_temperature_at) OVER w AS c_temperature_at,
    last_known(m_glucose) OVER w AS c_glucose, last_known(m_glucose_at) OVER w AS c_glucose_at,
    last_known(m_respiratory_rate) OVER w AS c_respiratory_rate, last_known(m_respiratory_rate_at) OVER w AS c_respiratory_rate_at,
    last_known(m_on_oxygen) OVER w AS c_on_oxygen, last_known(m_on_oxygen_at) OVER w AS c_on_oxygen_at,
    last_known(m_consciousness) OVER w AS c_consciousness, last_known(m_consciousness_at) OVER w AS c_consciousness_at
  FROM judged j
  WHERE reject_code IS NULL
  WINDOW w AS (PARTITION BY patient_id ORDER BY event_time, from_state DESC, source_topic, source_partition, source_offset
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
carried AS (
  -- A carried value counts for carry_forward_seconds after it was measured, then it is missing.
  SELECT patient_id, event_time, from_state, source_topic, source_partition, source_offset, state_risk,
    CASE WHEN c_heart_rate_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_heart_rate END AS heart_rate,
    CASE WHEN c_heart_rate_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_heart_rate_at END AS heart_rate_measured_at,
    CASE WHEN c_systolic_bp_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_systolic_bp END AS systolic_bp,
    CASE WHEN c_systolic_bp_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_systolic_bp_at END AS systolic_bp_measured_at,
    CASE WHEN c_diastolic_bp_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_diastolic_bp END AS diastolic_bp,
    CASE WHEN c_diastolic_bp_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_diastolic_bp_at END AS diastolic_bp_measured_at,
    CASE WHEN c_spo2_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_spo2 END AS spo2,
    CASE WHEN c_spo2_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_spo2_at END AS spo2_measured_at,
    CASE WHEN c_temperature_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_temperature END AS temperature,
    CASE WHEN c_temperature_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_temperature_at END AS temperature_measured_at,
    CASE WHEN c_glucose_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_glucose END AS glucose,
    CASE WHEN c_glucose_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_glucose_at END AS glucose_measured_at,
    CASE WHEN c_respiratory_rate_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_respiratory_rate END AS respiratory_rate,
    CASE WHEN c_respiratory_rate_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_respiratory_rate_at END AS respiratory_rate_measured_at,
    CASE WHEN c_on_oxygen_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_on_oxygen END AS on_oxygen,
    CASE WHEN c_on_oxygen_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_on_oxygen_at END AS on_oxygen_measured_at,
    CASE WHEN c_consciousness_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_consciousness END AS consciousness,
    CASE WHEN c_consciousness_at >= event_time - INTERVAL '${carry_forward_seconds} seconds' THEN c_consciousness_at END AS consciousness_measured_at
  FROM clean_timeline
),
windowed AS (
  -- Per-patient features over the last window_readings clean readings, earlier batches included:
  -- the rolling mean, and the change since the oldest reading in the window.
  SELECT c.*,
    avg(heart_rate) OVER r AS heart_rate_rolling_mean, heart_rate - first_value(heart_rate) OVER r AS heart_rate_change,
    avg(systolic_bp) OVER r AS systolic_bp_rolling_mean, systolic_bp - first_value(systolic_bp) OVER r AS systolic_bp_change,
    avg(diastolic_bp) OVER r AS diastolic_bp_rolling_mean, diastolic_bp - first_value(diastolic_bp) OVER r AS diastolic_bp_change,
    avg(spo2) OVER r AS spo2_rolling_mean, spo2 - first_value(spo2) OVER r AS spo2_change,
    avg(temperature) OVER r AS temperature_rolling_mean, temperature - first_value(temperature) OVER r AS temperature_change,
    avg(glucose) OVER r AS glucose_rolling_mean, glucose - first_value(glucose) OVER r AS glucose_change,
    avg(respiratory_rate) OVER r AS respiratory_rate_rolling_mean, respiratory_rate - first_value(respiratory_rate) OVER r AS respiratory_rate_change
  FROM carried c
  WINDOW r AS (PARTITION BY patient_id ORDER BY event_time, from_state DESC, source_topic, source_partition, source_offset
               ROWS BETWEEN ${window_preceding} PRECEDING AND CURRENT ROW)
),
scored AS (
  -- The trend model scores the reading with its features (${trend_arguments}: the inputs its model
  -- file names); a state row keeps the risk it was given.
  SELECT w.*,
    CASE WHEN from_state THEN state_risk ELSE predict_trend_risk(${trend_arguments}) END AS risk,
    trend_risk_probability(${trend_arguments}) AS probabilities
  FROM windowed w
),
previous AS (
  -- The risk before this reading (the alert rule's "rises to High").
  SELECT s.*,
    last_known(risk) OVER (PARTITION BY patient_id ORDER BY event_time, from_state DESC, source_topic, source_partition, source_offset
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_risk
  FROM scored s
),
clean AS (
  SELECT patient_id, event_time,
    heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, on_oxygen, consciousness,
    risk,
    rubric_score(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) AS rubric_score,
    news2_score(respiratory_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature) AS news2_score,
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
    CAST(NULL AS VARCHAR) AS reject_code, CAST(NULL AS VARCHAR) AS reject_reason,
    -- DESIGN's alert rule: risk rises to High from a lower level or from no earlier reading.
    risk = 'High' AND (previous_risk IS NULL OR previous_risk <> 'High') AS raises_alert,
    previous_risk,
    heart_rate_measured_at, systolic_bp_measured_at, diastolic_bp_measured_at, spo2_measured_at,
    temperature_measured_at, glucose_measured_at, respiratory_rate_measured_at, on_oxygen_measured_at,
    consciousness_measured_at,
    -- Columns added after this SQL was replaced (the bench's readings name no ward, scale or validation).
    CAST(NULL AS VARCHAR) AS ward, CAST(NULL AS BOOLEAN) AS validated, CAST(NULL AS INT) AS spo2_scale,
    CAST(NULL AS VARCHAR) AS unscored_reason
  FROM previous
  WHERE NOT from_state
)
SELECT * FROM clean
UNION ALL
-- Rejected rows keep their values as landed; the driver writes them to dead_letters.
SELECT patient_id, event_time,
  heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, on_oxygen, consciousness,
  NULL, NULL, NULL, model_version(), source_topic, source_partition, source_offset,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  reject_code, reject_reason, FALSE, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  CAST(NULL AS VARCHAR), CAST(NULL AS BOOLEAN), CAST(NULL AS INT), CAST(NULL AS VARCHAR)
FROM judged
WHERE reject_code IS NOT NULL
