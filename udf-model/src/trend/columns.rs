//! The names a trend model's file may list as inputs: columns the ETL has for every reading when it
//! scores, and inputs the forest derives from them.

use arrow::datatypes::DataType;

use crate::rubric::Consciousness;
use crate::schema::Vital;
use crate::ward_score::WardVitals;

/// A column of the ETL's scoring step (and of `vitals_clean`, under the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendColumn {
    /// The vital as carried forward (`heart_rate`, …).
    Vital(Vital),
    /// `on_oxygen`, as 1 (on oxygen) or 0.
    OnOxygen,
    /// `consciousness`, as its ACVPU rank ([`consciousness_code`]).
    Consciousness,
    /// `<vital>_rolling_mean`: the mean over the patient's last `etl.window_readings` readings.
    RollingMean(Vital),
    /// `<vital>_change`: the vital now minus its value at the start of that window.
    Change(Vital),
}

impl TrendColumn {
    /// Every column the ETL supplies.
    pub fn all() -> Vec<TrendColumn> {
        let vitals = Vital::ALL.iter().map(|v| TrendColumn::Vital(*v));
        let means = Vital::ALL.iter().map(|v| TrendColumn::RollingMean(*v));
        let changes = Vital::ALL.iter().map(|v| TrendColumn::Change(*v));
        vitals.chain([TrendColumn::OnOxygen, TrendColumn::Consciousness]).chain(means).chain(changes).collect()
    }

    /// The column's name in the ETL and in `vitals_clean`.
    pub fn name(self) -> String {
        match self {
            TrendColumn::Vital(v) => v.column().to_string(),
            TrendColumn::OnOxygen => "on_oxygen".into(),
            TrendColumn::Consciousness => "consciousness".into(),
            TrendColumn::RollingMean(v) => format!("{}_rolling_mean", v.column()),
            TrendColumn::Change(v) => format!("{}_change", v.column()),
        }
    }

    /// The column of that name.
    pub fn parse(name: &str) -> Option<TrendColumn> {
        TrendColumn::all().into_iter().find(|c| c.name() == name)
    }

    /// The column's type in the ETL (what the trend functions take).
    pub fn data_type(self) -> DataType {
        match self {
            TrendColumn::OnOxygen => DataType::Boolean,
            TrendColumn::Consciousness => DataType::Utf8,
            _ => DataType::Float64,
        }
    }
}

/// An input the forest computes from its columns when it scores (so training and every caller compute
/// it the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedInput {
    /// `ward_points`: the ward score of the reading's vitals (`WardVitals::ordered_points`, a missing
    /// parameter counted as normal).
    WardPoints,
    /// `ward_points_smoothed`: the same of the rolling means (oxygen and consciousness as now).
    WardPointsSmoothed,
}

impl DerivedInput {
    /// Both derived inputs.
    pub const ALL: [DerivedInput; 2] = [DerivedInput::WardPoints, DerivedInput::WardPointsSmoothed];

    /// The input's name in a model file.
    pub fn name(self) -> &'static str {
        match self {
            DerivedInput::WardPoints => "ward_points",
            DerivedInput::WardPointsSmoothed => "ward_points_smoothed",
        }
    }

    /// The columns it is computed from, in [`WardVitals`] order (seven vitals, oxygen, consciousness).
    pub fn sources(self) -> [TrendColumn; 9] {
        let numeric = |v: Vital| match self {
            DerivedInput::WardPoints => TrendColumn::Vital(v),
            DerivedInput::WardPointsSmoothed => TrendColumn::RollingMean(v),
        };
        [
            numeric(Vital::HeartRate),
            numeric(Vital::SystolicBp),
            numeric(Vital::DiastolicBp),
            numeric(Vital::Spo2),
            numeric(Vital::Temperature),
            numeric(Vital::Glucose),
            numeric(Vital::RespiratoryRate),
            TrendColumn::OnOxygen,
            TrendColumn::Consciousness,
        ]
    }

    /// The input's value from its sources' values in [`DerivedInput::sources`] order (NaN: missing).
    pub fn value(values: &[f64; 9]) -> f64 {
        ward_vitals(values).ordered_points()
    }
}

/// The ward score's parameters of nine values in [`DerivedInput::sources`] order (the seven vitals,
/// oxygen as 1/0, consciousness as its rank); NaN is missing.
pub fn ward_vitals(values: &[f64; 9]) -> WardVitals {
    let at = |i: usize| values[i].is_finite().then_some(values[i]);
    WardVitals {
        heart_rate: at(0),
        systolic_bp: at(1),
        diastolic_bp: at(2),
        spo2: at(3),
        temperature: at(4),
        glucose: at(5),
        respiratory_rate: at(6),
        on_oxygen: at(7).map(|v| v >= 0.5),
        consciousness: at(8).and_then(consciousness_of_code),
    }
}

/// An input named in a trend model's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendInput {
    /// A column the ETL passes to the trend functions.
    Column(TrendColumn),
    /// Computed by the forest from columns.
    Derived(DerivedInput),
}

impl TrendInput {
    /// The input of that name.
    pub fn parse(name: &str) -> Option<TrendInput> {
        TrendColumn::parse(name)
            .map(TrendInput::Column)
            .or_else(|| DerivedInput::ALL.into_iter().find(|d| d.name() == name).map(TrendInput::Derived))
    }

    /// The input's name.
    pub fn name(self) -> String {
        match self {
            TrendInput::Column(c) => c.name(),
            TrendInput::Derived(d) => d.name().to_string(),
        }
    }
}

/// The inputs `vitalflow train` gives the trend model: the reading's nine parameters, the rolling
/// means of the five vitals that move first when a patient deteriorates, and both ward scores
/// (sixteen: the forest's row holds sixteen inputs).
pub fn default_inputs() -> Vec<TrendInput> {
    let mut inputs: Vec<TrendInput> = Vital::ALL.iter().map(|v| TrendInput::Column(TrendColumn::Vital(*v))).collect();
    inputs.push(TrendInput::Column(TrendColumn::OnOxygen));
    inputs.push(TrendInput::Column(TrendColumn::Consciousness));
    for v in [Vital::HeartRate, Vital::SystolicBp, Vital::Spo2, Vital::Temperature, Vital::RespiratoryRate] {
        inputs.push(TrendInput::Column(TrendColumn::RollingMean(v)));
    }
    inputs.extend(DerivedInput::ALL.map(TrendInput::Derived));
    inputs
}

/// Consciousness as a number for the trees: its rank on ACVPU (alert 0 … unresponsive 4).
pub fn consciousness_code(level: Consciousness) -> f64 {
    match level {
        Consciousness::Alert => 0.0,
        Consciousness::Confused => 1.0,
        Consciousness::Voice => 2.0,
        Consciousness::Pain => 3.0,
        Consciousness::Unresponsive => 4.0,
    }
}

fn consciousness_of_code(code: f64) -> Option<Consciousness> {
    [
        Consciousness::Alert,
        Consciousness::Confused,
        Consciousness::Voice,
        Consciousness::Pain,
        Consciousness::Unresponsive,
    ]
    .into_iter()
    .find(|c| consciousness_code(*c) == code)
}
