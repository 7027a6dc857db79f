//! The vitals schema and the tables users see (docs/tables.md).
//!
//! Every vital is nullable: monitors do not measure every vital every time.
//! Times are `Timestamp(Nanosecond, "UTC")`, the unit every Flight SQL client reads.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The six vitals the risk model sees, in the model's feature order.
pub const MODEL_FEATURES: [Vital; 6] =
    [Vital::HeartRate, Vital::SystolicBp, Vital::DiastolicBp, Vital::Spo2, Vital::Temperature, Vital::Glucose];

/// A numeric vital sign carried by a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vital {
    /// Pulse, beats per minute.
    HeartRate,
    /// Systolic blood pressure, mmHg.
    SystolicBp,
    /// Diastolic blood pressure, mmHg.
    DiastolicBp,
    /// Peripheral oxygen saturation, percent.
    Spo2,
    /// Body temperature, degrees Celsius.
    Temperature,
    /// Blood glucose, mg/dL.
    Glucose,
    /// Respiration rate, breaths per minute.
    RespiratoryRate,
}

impl Vital {
    /// Every numeric vital, in column order.
    pub const ALL: [Vital; 7] = [
        Vital::HeartRate,
        Vital::SystolicBp,
        Vital::DiastolicBp,
        Vital::Spo2,
        Vital::Temperature,
        Vital::Glucose,
        Vital::RespiratoryRate,
    ];

    /// The column name in every table.
    pub fn column(self) -> &'static str {
        match self {
            Vital::HeartRate => "heart_rate",
            Vital::SystolicBp => "systolic_bp",
            Vital::DiastolicBp => "diastolic_bp",
            Vital::Spo2 => "spo2",
            Vital::Temperature => "temperature",
            Vital::Glucose => "glucose",
            Vital::RespiratoryRate => "respiratory_rate",
        }
    }

    /// Other names producers use for this vital (the seed's and common monitor exports).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            Vital::HeartRate => &["hr", "pulse", "pulse_rate"],
            Vital::SystolicBp => &["sbp", "systolic"],
            Vital::DiastolicBp => &["dbp", "diastolic"],
            Vital::Spo2 => &["oxygen_saturation", "sp_o2", "o2_sat"],
            Vital::Temperature => &["body_temperature", "temp"],
            Vital::Glucose => &["glucose_level", "blood_glucose"],
            Vital::RespiratoryRate => &["rr", "resp_rate", "respiration_rate"],
        }
    }

    /// Values a living patient can show, inclusive. Outside them a reading is a sensor or entry error
    /// and the record becomes a dead letter instead of a wrong risk label.
    pub fn possible_range(self) -> (f64, f64) {
        match self {
            Vital::HeartRate => (20.0, 300.0),
            Vital::SystolicBp => (40.0, 300.0),
            Vital::DiastolicBp => (10.0, 200.0),
            Vital::Spo2 => (40.0, 100.0),
            Vital::Temperature => (25.0, 45.0),
            Vital::Glucose => (10.0, 1500.0),
            Vital::RespiratoryRate => (2.0, 80.0),
        }
    }
}

/// Names of the SQL tables.
pub mod table {
    /// Every record ingest decoded, as landed.
    pub const VITALS_RAW: &str = "vitals_raw";
    /// Cleaned and scored readings written by the ETL.
    pub const VITALS_CLEAN: &str = "vitals_clean";
    /// Records that could not be used, with the reason.
    pub const DEAD_LETTERS: &str = "dead_letters";
    /// One row per patient: the latest reading, kept current by the ETL.
    pub const PATIENT_LATEST: &str = "patient_latest";
    /// One row each time a patient's risk rises to High.
    pub const RISK_ALERTS: &str = "risk_alerts";
    /// The alerts a ward acts on, one row per alert in its current state.
    pub const ALERTS: &str = "alerts";
    /// Every change of an alert (raised, acknowledged, escalated, dismissed, resolved), append-only.
    pub const ALERT_EVENTS: &str = "alert_events";
    /// Every Flight SQL query and refused call (who, when, the SQL, how it ended), written by the front
    /// door; admins only.
    pub const AUDIT_LOG: &str = "audit_log";
    /// Admissions, transfers, discharges and updates of patients, one row per movement, append-only.
    pub const PATIENT_MOVEMENTS: &str = "patient_movements";
}

fn utc_nanos() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn vital_fields() -> Vec<Field> {
    let mut fields: Vec<Field> = Vital::ALL.iter().map(|v| Field::new(v.column(), DataType::Float64, true)).collect();
    fields.push(Field::new("on_oxygen", DataType::Boolean, true));
    fields.push(Field::new("consciousness", DataType::Utf8, true));
    fields
}

fn source_fields() -> [Field; 3] {
    [
        Field::new("source_topic", DataType::Utf8, false),
        Field::new("source_partition", DataType::Int32, false),
        Field::new("source_offset", DataType::Int64, false),
    ]
}

/// `vitals_raw`: one row per decoded Kafka record.
pub static VITALS_RAW_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields =
        vec![Field::new("patient_id", DataType::Utf8, false), Field::new("event_time", utc_nanos(), false)];
    fields.extend(vital_fields());
    fields.extend(source_fields());
    fields.push(Field::new("ingest_time", utc_nanos(), false));
    // Added after the first release: nullable and at the end, so that older tables gain them.
    fields.extend(reading_context_fields());
    Arc::new(Schema::new(fields))
});

/// What a record says of its reading beside the vitals, in `vitals_raw` and `vitals_clean`: the
/// patient's `ward` (NULL: not said), whether a person `validated` the values (false for a device's
/// stream; NULL only in rows landed before the column existed) and the NEWS2 `spo2_scale` the patient is
/// scored on (2 for hypercapnic respiratory failure; NULL: scale 1).
fn reading_context_fields() -> [Field; 3] {
    [
        Field::new(WARD, DataType::Utf8, true),
        Field::new("validated", DataType::Boolean, true),
        Field::new("spo2_scale", DataType::Int32, true),
    ]
}

/// The column naming a reading's ward (`vitals_raw`, `vitals_clean`, `patient_latest`, `risk_alerts`).
pub const WARD: &str = "ward";

/// The `vitals_clean` column saying why a clean reading has no risk although the model could score it:
/// `not_validated` when `etl.score = "validated"` and no person confirmed the values; NULL otherwise.
pub const UNSCORED_REASON: &str = "unscored_reason";

/// `dead_letters`: one row per record that could not be used, from ingest or the ETL.
pub static DEAD_LETTERS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![Field::new("payload", DataType::Binary, false)];
    fields.extend(source_fields());
    fields.extend([
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason_code", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("dead_letter_time", utc_nanos(), false),
    ]);
    Arc::new(Schema::new(fields))
});

/// `patient_movements`: one row per admission, transfer, discharge or update of a patient (flat JSON
/// or HL7 v2 ADT), as landed by ingest; never rewritten, so the history is kept. `movement` is one of
/// [`MOVEMENTS`]; `ward`, `room` and `bed` are where the patient is after it (NULL: not said).
pub static PATIENT_MOVEMENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("movement", DataType::Utf8, false),
        Field::new("ward", DataType::Utf8, true),
        Field::new("room", DataType::Utf8, true),
        Field::new("bed", DataType::Utf8, true),
        Field::new("event_time", utc_nanos(), false),
        // `ADT^A02` for HL7 v2; NULL for the JSON record.
        Field::new("message_type", DataType::Utf8, true),
    ];
    fields.extend(source_fields());
    fields.push(Field::new("ingest_time", utc_nanos(), false));
    Arc::new(Schema::new(fields))
});

/// The values of `patient_movements.movement`.
pub const MOVEMENTS: [&str; 4] = ["admit", "transfer", "discharge", "update"];

/// `vitals_clean`: cleaned, scored readings.
pub static VITALS_CLEAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields =
        vec![Field::new("patient_id", DataType::Utf8, false), Field::new("event_time", utc_nanos(), false)];
    fields.extend(vital_fields());
    fields.extend([
        Field::new("risk", DataType::Utf8, true),
        Field::new("rubric_score", DataType::Int32, true),
        Field::new("news2_score", DataType::Int32, true),
        Field::new("model_version", DataType::Utf8, false),
    ]);
    fields.extend(source_fields());
    fields.push(Field::new("etl_batch_id", DataType::Int64, false));
    // Added after the first release: nullable and at the end, so that older files stay readable.
    fields.extend(clean_feature_fields());
    Arc::new(Schema::new(fields))
});

/// Columns of `vitals_clean` after `etl_batch_id`: class probabilities (P(High) calibrated) and
/// per-patient windowed features (rolling mean and change over the patient's last readings, and an
/// anomaly flag), then the forest's own P(High).
fn clean_feature_fields() -> Vec<Field> {
    let mut fields: Vec<Field> = ["probability_high", "probability_medium", "probability_low"]
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, true))
        .collect();
    for v in WINDOWED_VITALS {
        fields.push(Field::new(format!("{}_rolling_mean", v.column()), DataType::Float64, true));
        fields.push(Field::new(format!("{}_change", v.column()), DataType::Float64, true));
    }
    fields.push(Field::new("anomaly", DataType::Boolean, true));
    // The forest's own P(High), beside the calibrated `probability_high`.
    fields.push(Field::new("forest_probability_high", DataType::Float64, true));
    fields.extend(reading_context_fields());
    fields.push(Field::new(UNSCORED_REASON, DataType::Utf8, true));
    fields
}

/// Vitals with rolling features in `vitals_clean`.
pub const WINDOWED_VITALS: [Vital; 7] = Vital::ALL;

/// `patient_latest`: one row per patient, the latest reading with its carried-forward vitals and
/// scores, and when each vital was last measured (the carry-forward state of the ETL).
pub static PATIENT_LATEST_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields =
        vec![Field::new("patient_id", DataType::Utf8, false), Field::new("event_time", utc_nanos(), false)];
    fields.extend(vital_fields());
    fields.extend([
        Field::new("risk", DataType::Utf8, true),
        Field::new("probability_high", DataType::Float64, true),
        Field::new("rubric_score", DataType::Int32, true),
        Field::new("news2_score", DataType::Int32, true),
        Field::new("model_version", DataType::Utf8, false),
    ]);
    fields.extend(source_fields());
    fields.push(Field::new("etl_batch_id", DataType::Int64, false));
    fields.extend(measured_time_fields());
    // Added after the first release (nullable, at the end): the latest reading's ward.
    fields.push(Field::new(WARD, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// `<vital>_measured_at` for every vital, on-oxygen and consciousness: when the carried value was measured.
pub fn measured_time_fields() -> Vec<Field> {
    vital_fields().iter().map(|f| Field::new(format!("{}_measured_at", f.name()), utc_nanos(), true)).collect()
}

/// `risk_alerts`: one row when a patient's risk rises to High from a lower level or from no earlier
/// reading, with why ([`TOP_REASONS`]). `alert_id` is stable across re-runs (the triggering reading's
/// source position), so receivers of pushed alerts can drop repeats.
pub static RISK_ALERTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("event_time", utc_nanos(), false),
        Field::new("risk", DataType::Utf8, false),
        Field::new("previous_risk", DataType::Utf8, true),
        Field::new("probability_high", DataType::Float64, true),
        Field::new("news2_score", DataType::Int32, true),
        Field::new("rubric_score", DataType::Int32, true),
        Field::new("model_version", DataType::Utf8, false),
    ];
    fields.extend(source_fields());
    fields.push(Field::new("etl_batch_id", DataType::Int64, false));
    // Last: tables written before it have it added (NULL in their older rows).
    fields.push(Field::new(TOP_REASONS, DataType::Utf8, true));
    // The raising reading's ward (NULL: it named none), whose rules the alert keeper applies.
    fields.push(Field::new(WARD, DataType::Utf8, true));
    Arc::new(Schema::new(fields))
});

/// `alerts`: one row per alert a ward acts on (after its muting rules), in its current state; the
/// table is rewritten with every change, each change also a row of [`ALERT_EVENTS_SCHEMA`].
pub static ALERTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("ward", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("raised_at", utc_nanos(), false),
        Field::new("risk_alert_id", DataType::Utf8, false),
        Field::new("news2_score", DataType::Int32, true),
        Field::new("probability_high", DataType::Float64, true),
        Field::new("created_at", utc_nanos(), false),
        Field::new("acknowledged_by", DataType::Utf8, true),
        Field::new("acknowledged_at", utc_nanos(), true),
        Field::new("updated_by", DataType::Utf8, false),
        Field::new("updated_at", utc_nanos(), false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("events", DataType::Int64, false),
        // Added after the first release (nullable, at the end; NULL is `risk`): what raised the alert.
        Field::new("kind", DataType::Utf8, true),
    ]))
});

/// `alert_events`: one row per change of an alert, never rewritten. `event_seq` numbers every event
/// of the table (1, 2, ...); `event_id` (`<alert_id>#<n>`, the alert's n-th event) is stable, for
/// receivers of pushed events to drop repeats by.
pub static ALERT_EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_seq", DataType::Int64, false),
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("ward", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("from_state", DataType::Utf8, true),
        Field::new("to_state", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("automatic", DataType::Boolean, false),
        Field::new("recorded_at", utc_nanos(), false),
        Field::new("reading_time", utc_nanos(), true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("risk_alert_id", DataType::Utf8, true),
        Field::new("news2_score", DataType::Int32, true),
        Field::new("probability_high", DataType::Float64, true),
        // Added after the first release (nullable, at the end; NULL is `risk`): what the alert is about.
        Field::new("kind", DataType::Utf8, true),
    ]))
});

/// The `risk_alerts` column naming the three inputs that pushed the reading's P(High) most, with their
/// contributions (`explain_trend_risk`, the model the ETL scores with), e.g.
/// `ward_points +0.312, ward_points_smoothed +0.201, respiratory_rate +0.087`.
pub const TOP_REASONS: &str = "top_reasons";
