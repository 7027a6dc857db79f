-- vitalflow's continuous ETL: one micro-batch of newly landed `vitals_raw` rows, visible here as the
-- table `new_vitals_raw`, becomes `vitals_clean` rows. Runs on the Ballista executors.
--
-- Edit freely (point `etl.sql_file` at your copy): the result must have the columns of `vitals_clean`
-- by name (README, Tables); the driver adds `etl_batch_id` and checks types and NULLs before writing.
SELECT
  patient_id,
  event_time,
  heart_rate,
  systolic_bp,
  diastolic_bp,
  spo2,
  temperature,
  glucose,
  respiratory_rate,
  on_oxygen,
  consciousness,
  predict_risk(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) AS risk,
  rubric_score(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) AS rubric_score,
  news2_score(respiratory_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature) AS news2_score,
  model_version() AS model_version,
  source_topic,
  source_partition,
  source_offset
FROM new_vitals_raw
