//! The ward simulator behind `vitalflow simulate`, `vitalflow up` and `vitalflow train`.
//!
//! Each patient has their own baseline (some are hypertensive, diabetic or chronically hypoxic), a
//! circadian rhythm and a slow random drift. Deterioration episodes — sepsis-like, hypoglycaemia,
//! hypertensive crisis, respiratory decline — start at random, build up over tens of minutes, hold and
//! recover. The label comes from the patient's TRUE state with the clinical rubric; the emitted reading
//! is a monitor's view of it: sensor noise, artefacts (SpO2 probe drop-outs, motion spikes on the pulse,
//! a slipped temperature probe) and fields the monitor did not send. Everything is deterministic for a
//! seed: the same seed, settings and patient count give the same readings (timestamps aside).

use chrono::{DateTime, SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::rubric::{Consciousness, RiskLevel, SixVitals};
use crate::schema::Vital;
use crate::trend::consciousness_code;
use crate::ward_score::WardVitals;

/// One reading in the seed's flat JSON contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitalsRecord {
    /// Patient identifier, e.g. `P017`.
    pub patient_id: String,
    /// RFC 3339 UTC time of the measurement.
    pub timestamp: String,
    /// Beats/min.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heart_rate: Option<f64>,
    /// mmHg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systolic_bp: Option<f64>,
    /// mmHg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diastolic_bp: Option<f64>,
    /// Percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spo2: Option<f64>,
    /// °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// mg/dL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glucose: Option<f64>,
    /// Breaths/min.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respiratory_rate: Option<f64>,
    /// On supplemental oxygen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_oxygen: Option<bool>,
    /// ACVPU letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consciousness: Option<String>,
}

impl VitalsRecord {
    /// The six model inputs in feature order, if all were measured.
    pub fn six(&self) -> Option<[f64; 6]> {
        Some([self.heart_rate?, self.systolic_bp?, self.diastolic_bp?, self.spo2?, self.temperature?, self.glucose?])
    }

    /// The measured parameters in the order of `trend::PatientTrend::push` (the seven vitals, oxygen as
    /// 1/0, consciousness as its ACVPU rank), NaN where the record lacks one.
    pub fn measured(&self) -> [f64; 9] {
        let number = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let [hr, sbp, dbp, spo2, temp, glucose, rr] = self.vitals().map(number);
        [
            hr,
            sbp,
            dbp,
            spo2,
            temp,
            glucose,
            rr,
            number(self.on_oxygen.map(|o| if o { 1.0 } else { 0.0 })),
            number(self.consciousness.as_deref().and_then(Consciousness::parse).map(consciousness_code)),
        ]
    }

    /// The numeric vitals in `Vital::ALL` order.
    pub fn vitals(&self) -> [Option<f64>; 7] {
        [
            self.heart_rate,
            self.systolic_bp,
            self.diastolic_bp,
            self.spo2,
            self.temperature,
            self.glucose,
            self.respiratory_rate,
        ]
    }
}

/// How readings are written to Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// The seed's flat JSON (`heart_rate`, `systolic_bp`, ..., RFC 3339 `timestamp`).
    #[default]
    Flat,
    /// Flat JSON with the short names other monitors export (`hr`, `sbp`, ..., `rr`) and epoch-millisecond `ts`.
    Aliases,
    /// An HL7 FHIR R4 `Bundle` of vital-signs `Observation`s, LOINC-coded with UCUM units (no oxygen or
    /// consciousness: they are not vital-signs Observations).
    Fhir,
    /// An HL7 v2.6 ORU^R01 as a bedside monitor's gateway sends it (IHE PCD-01): one OBX per vital, coded
    /// in IEEE 11073-10101 (MDC) with MDC units, result status `R` (device data; no oxygen or
    /// consciousness, which monitors do not measure).
    Hl7v2,
}

impl OutputFormat {
    /// Every format, for help texts.
    pub const ALL: [OutputFormat; 4] =
        [OutputFormat::Flat, OutputFormat::Aliases, OutputFormat::Fhir, OutputFormat::Hl7v2];

    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Flat => "flat",
            OutputFormat::Aliases => "aliases",
            OutputFormat::Fhir => "fhir",
            OutputFormat::Hl7v2 => "hl7v2",
        }
    }

    /// Parses [`OutputFormat::name`].
    pub fn parse(name: &str) -> Result<OutputFormat> {
        OutputFormat::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
            let names: Vec<&str> = OutputFormat::ALL.iter().map(|f| f.name()).collect();
            Error::Config(format!("simulator format {name:?}: use one of {}", names.join(", ")))
        })
    }
}

/// What the simulated ward looks like. `Default` holds the realistic settings; tests that compare labels
/// with band edges pin `artefact_rate` and `missing_rate` to 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SimulatorSettings {
    /// Simulated seconds between two readings of one patient (the ward's clock runs this much per turn).
    pub seconds_per_reading: f64,
    /// New deterioration episodes per patient per simulated hour, while the patient is not in one.
    pub episode_rate_per_hour: f64,
    /// Fraction of patients already in an episode (at a random stage) when the simulation starts.
    pub ill_at_start: f64,
    /// Fraction of readings carrying an artefact (SpO2 drop-out, motion spike, slipped temperature probe).
    pub artefact_rate: f64,
    /// Probability that a given vital is missing from a reading (glucose, a point-of-care test, twice as often).
    pub missing_rate: f64,
    /// How readings are encoded: `flat` (the seed's JSON), `aliases` (short names, epoch-ms `ts`), `fhir`
    /// (R4 Bundles) or `hl7v2` (ORU^R01, IHE PCD-01).
    pub format: OutputFormat,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings {
            seconds_per_reading: 30.0,
            episode_rate_per_hour: 0.15,
            ill_at_start: 0.35,
            artefact_rate: 0.03,
            missing_rate: 0.02,
            format: OutputFormat::Flat,
        }
    }
}

impl SimulatorSettings {
    /// Checks the ranges; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config(format!("simulator.{name} is {v}: use a fraction from 0 to 1")))
            }
        };
        fraction("ill_at_start", self.ill_at_start)?;
        fraction("artefact_rate", self.artefact_rate)?;
        fraction("missing_rate", self.missing_rate)?;
        if !(self.seconds_per_reading > 0.0 && self.seconds_per_reading <= 86_400.0) {
            return Err(Error::Config(format!(
                "simulator.seconds_per_reading is {}: use more than 0 and at most 86400",
                self.seconds_per_reading
            )));
        }
        if !(0.0..=60.0).contains(&self.episode_rate_per_hour) {
            return Err(Error::Config(format!(
                "simulator.episode_rate_per_hour is {}: use 0 to 60",
                self.episode_rate_per_hour
            )));
        }
        Ok(())
    }
}

/// Vitals in `Vital::ALL` order: heart rate, systolic, diastolic, SpO2, temperature, glucose, respiration.
type State = [f64; 7];

/// The kinds of deterioration the ward sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeKind {
    /// Infection with a systemic response: fast pulse, falling pressure, fever, fast breathing.
    Sepsis,
    /// Falling blood glucose with a sympathetic response.
    Hypoglycaemia,
    /// Very high blood pressure.
    HypertensiveCrisis,
    /// Falling oxygen saturation, fast breathing, tachycardia (e.g. pneumonia, pulmonary oedema).
    RespiratoryDecline,
}

impl EpisodeKind {
    /// The change of each vital at full severity and full intensity.
    fn effect(self) -> State {
        match self {
            //                              hr     sbp    dbp    spo2   temp   glu    rr
            EpisodeKind::Sepsis => [60.0, -50.0, -32.0, -7.0, 2.7, 110.0, 15.0],
            EpisodeKind::Hypoglycaemia => [35.0, 12.0, 5.0, 0.0, -0.6, 0.0, 4.0],
            EpisodeKind::HypertensiveCrisis => [20.0, 95.0, 52.0, 0.0, 0.0, 40.0, 4.0],
            EpisodeKind::RespiratoryDecline => [48.0, -12.0, -6.0, -15.0, 1.6, 70.0, 18.0],
        }
    }

    /// Minutes of build-up, plateau and recovery: (low, high) for each.
    fn phase_minutes(self) -> [(f64, f64); 3] {
        match self {
            EpisodeKind::Sepsis => [(30.0, 120.0), (30.0, 150.0), (60.0, 180.0)],
            EpisodeKind::Hypoglycaemia => [(10.0, 40.0), (10.0, 45.0), (10.0, 30.0)],
            EpisodeKind::HypertensiveCrisis => [(15.0, 60.0), (20.0, 90.0), (30.0, 120.0)],
            EpisodeKind::RespiratoryDecline => [(30.0, 150.0), (30.0, 120.0), (60.0, 180.0)],
        }
    }

    fn draw(rng: &mut ChaCha8Rng) -> EpisodeKind {
        match rng.gen_range(0..100) {
            0..40 => EpisodeKind::Sepsis,
            40..55 => EpisodeKind::Hypoglycaemia,
            55..75 => EpisodeKind::HypertensiveCrisis,
            _ => EpisodeKind::RespiratoryDecline,
        }
    }
}

/// One deterioration: its kind, how bad it gets, and when each phase ends (simulated seconds).
#[derive(Debug, Clone, Copy)]
struct Episode {
    kind: EpisodeKind,
    severity: f64,
    start: f64,
    peak: f64,
    plateau_end: f64,
    end: f64,
}

impl Episode {
    fn draw(rng: &mut ChaCha8Rng, start: f64) -> Episode {
        let kind = EpisodeKind::draw(rng);
        let [up, hold, down] = kind.phase_minutes().map(|(lo, hi)| rng.gen_range(lo..hi) * 60.0);
        let peak = start + up;
        let plateau_end = peak + hold;
        Episode { kind, severity: rng.gen_range(0.35..1.1), start, peak, plateau_end, end: plateau_end + down }
    }

    /// 0 before and after, rising to 1 at the peak, 1 on the plateau, falling back during recovery.
    fn intensity(&self, t: f64) -> f64 {
        if t <= self.start || t >= self.end {
            0.0
        } else if t < self.peak {
            // Smooth build-up: slow start, faster middle.
            let x = (t - self.start) / (self.peak - self.start);
            x * x * (3.0 - 2.0 * x)
        } else if t <= self.plateau_end {
            1.0
        } else {
            let x = (t - self.plateau_end) / (self.end - self.plateau_end);
            1.0 - x * x * (3.0 - 2.0 * x)
        }
    }
}

/// A patient's own physiology.
#[derive(Debug, Clone)]
struct Patient {
    id: String,
    baseline: State,
    /// Circadian phase, radians.
    phase: f64,
    /// Slow drift around the baseline (an Ornstein-Uhlenbeck process per vital).
    drift: State,
    /// The patient's own clock, simulated seconds.
    clock: f64,
    episode: Option<Episode>,
    /// Chronic supplemental oxygen (e.g. COPD on home oxygen).
    chronic_oxygen: bool,
}

/// Sensor noise (standard deviation) per vital in `Vital::ALL` order: what a ward monitor and a
/// point-of-care glucose meter show around the true value.
const NOISE: State = [2.0, 4.0, 3.0, 0.8, 0.1, 6.0, 1.0];
/// Standard deviation of the slow drift around the baseline, per vital.
const DRIFT: State = [4.0, 6.0, 4.0, 0.6, 0.15, 12.0, 1.0];
/// Drift time constant, seconds.
const DRIFT_TAU: f64 = 1_800.0;
/// Circadian amplitude per vital (lowest in the early morning).
const CIRCADIAN: State = [5.0, 7.0, 4.0, 0.0, 0.3, 8.0, 1.0];

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; one draw is enough here.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Patient {
    fn admit(rng: &mut ChaCha8Rng, number: usize, settings: &SimulatorSettings) -> Patient {
        let mut baseline = [
            rng.gen_range(58.0..88.0),
            rng.gen_range(112.0..138.0),
            rng.gen_range(62.0..82.0),
            rng.gen_range(96.5..99.3),
            rng.gen_range(36.3..37.4),
            rng.gen_range(80.0..140.0),
            rng.gen_range(13.0..18.0),
        ];
        // Chronic conditions shift the baseline: what is normal for this patient is not the textbook.
        if rng.gen_bool(0.2) {
            baseline[1] += rng.gen_range(15.0..35.0); // hypertension
            baseline[2] += rng.gen_range(5.0..12.0);
        }
        if rng.gen_bool(0.15) {
            baseline[5] += rng.gen_range(40.0..90.0); // diabetes
        }
        let chronic_oxygen = rng.gen_bool(0.06);
        if chronic_oxygen {
            baseline[3] -= rng.gen_range(3.0..6.0); // COPD: lower saturation target
            baseline[6] += rng.gen_range(2.0..5.0);
        }
        let clock = rng.gen_range(0.0..86_400.0);
        let episode = rng.gen_bool(settings.ill_at_start).then(|| {
            let e = Episode::draw(rng, clock);
            // Somewhere along its course already, not only at its start.
            let shift = rng.gen_range(0.0..(e.end - e.start) * 0.8);
            Episode {
                start: e.start - shift,
                peak: e.peak - shift,
                plateau_end: e.plateau_end - shift,
                end: e.end - shift,
                ..e
            }
        });
        let mut drift = [0.0; 7];
        for (d, sd) in drift.iter_mut().zip(DRIFT) {
            *d = sd * gaussian(rng);
        }
        Patient {
            id: format!("P{:03}", number + 1),
            baseline,
            phase: rng.gen_range(-0.5..0.5),
            drift,
            clock,
            episode,
            chronic_oxygen,
        }
    }

    /// Moves the patient's clock on by `dt` seconds: drift, episodes ending and starting.
    fn advance(&mut self, rng: &mut ChaCha8Rng, dt: f64, settings: &SimulatorSettings) {
        self.clock += dt;
        let keep = (-dt / DRIFT_TAU).exp();
        let spread = (1.0 - keep * keep).sqrt();
        for (d, sd) in self.drift.iter_mut().zip(DRIFT) {
            *d = *d * keep + sd * spread * gaussian(rng);
        }
        if self.episode.is_some_and(|e| self.clock >= e.end) {
            self.episode = None;
        }
        if self.episode.is_none() {
            let onset = 1.0 - (-settings.episode_rate_per_hour * dt / 3_600.0).exp();
            if rng.r#gen::<f64>() < onset {
                self.episode = Some(Episode::draw(rng, self.clock));
            }
        }
    }

    /// The true vitals now.
    fn truth(&self) -> State {
        let day = std::f64::consts::TAU * self.clock / 86_400.0;
        // Peak in the late afternoon, trough in the early morning.
        let rhythm = (day - std::f64::consts::PI * 1.25 + self.phase).sin();
        let mut s = [0.0; 7];
        for v in 0..7 {
            s[v] = self.baseline[v] + CIRCADIAN[v] * rhythm + self.drift[v];
        }
        if let Some(e) = self.episode {
            let k = e.intensity(self.clock) * e.severity;
            let effect = e.kind.effect();
            for v in 0..7 {
                s[v] += effect[v] * k;
            }
            if e.kind == EpisodeKind::Hypoglycaemia {
                // Glucose falls towards 30 mg/dL, whatever the baseline.
                s[5] -= (s[5] - 30.0) * k.min(1.0);
            }
        }
        s[3] = s[3].min(100.0);
        s
    }

    /// Oxygen is given when saturation stays low; consciousness is lost in a severe episode.
    fn oxygen_and_consciousness(&self, truth: &State) -> (bool, &'static str) {
        let on_oxygen = self.chronic_oxygen || truth[3] < 92.0;
        let consciousness = if truth[5] < 45.0 || truth[1] < 75.0 {
            "V"
        } else if truth[5] < 55.0 || truth[1] < 85.0 || truth[3] < 85.0 {
            "C"
        } else {
            "A"
        };
        (on_oxygen, consciousness)
    }
}

/// One reading and the label of the patient's true state when it was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedReading {
    /// What the monitor sent.
    pub record: VitalsRecord,
    /// The rubric's label of the true six vitals (what `predict_risk(six vitals)` learns).
    pub true_label: RiskLevel,
    /// The ward score's label of the whole true state, every NEWS2 parameter included (what the
    /// trend model learns; `crate::ward_score`).
    pub ward_label: RiskLevel,
}

/// Produces readings for a ward of patients, deterministically for a seed.
#[derive(Debug, Clone)]
pub struct VitalsSimulator {
    rng: ChaCha8Rng,
    patients: Vec<Patient>,
    next: usize,
    settings: SimulatorSettings,
}

impl VitalsSimulator {
    /// A ward of `patients` with the default (realistic) settings.
    pub fn new(patients: usize, seed: u64) -> VitalsSimulator {
        VitalsSimulator::with_settings(patients, seed, SimulatorSettings::default())
    }

    /// A ward of `patients` with `settings`.
    pub fn with_settings(patients: usize, seed: u64, settings: SimulatorSettings) -> VitalsSimulator {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let patients = (0..patients).map(|i| Patient::admit(&mut rng, i, &settings)).collect();
        VitalsSimulator { rng, patients, next: 0, settings }
    }

    /// Number of patients.
    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// The settings in use.
    pub fn settings(&self) -> &SimulatorSettings {
        &self.settings
    }

    /// The next reading, patients in turn, stamped `at`.
    pub fn next_reading(&mut self, at: DateTime<Utc>) -> VitalsRecord {
        self.next_labelled(at).record
    }

    /// The next reading encoded in the configured format, with its Kafka key (the patient id).
    pub fn next_payload(&mut self, at: DateTime<Utc>) -> (String, Vec<u8>) {
        let record = self.next_reading(at);
        let bytes = encode(&record, self.settings.format);
        (record.patient_id, bytes)
    }

    /// The next reading with the label of the true state.
    pub fn next_labelled(&mut self, at: DateTime<Utc>) -> SimulatedReading {
        if self.patients.is_empty() {
            // A ward needs patients; config validation refuses 0, so this only guards library callers.
            self.patients.push(Patient::admit(&mut self.rng, 0, &self.settings));
        }
        let i = self.next % self.patients.len();
        self.next += 1;
        let settings = self.settings;
        let rng = &mut self.rng;
        let patient = &mut self.patients[i];
        patient.advance(rng, settings.seconds_per_reading, &settings);
        let truth = patient.truth();
        let six = [truth[0], truth[1], truth[2], truth[3], truth[4], truth[5]];
        let true_label = SixVitals::from_array(six).rubric_label().unwrap_or(RiskLevel::High);
        let (on_oxygen, consciousness) = patient.oxygen_and_consciousness(&truth);
        let ward_label = WardVitals {
            heart_rate: Some(truth[0]),
            systolic_bp: Some(truth[1]),
            diastolic_bp: Some(truth[2]),
            spo2: Some(truth[3]),
            temperature: Some(truth[4]),
            glucose: Some(truth[5]),
            respiratory_rate: Some(truth[6]),
            on_oxygen: Some(on_oxygen),
            consciousness: Consciousness::parse(consciousness),
        }
        .label()
        .unwrap_or(RiskLevel::High);

        let mut measured = [0.0; 7];
        for v in 0..7 {
            measured[v] = truth[v] + NOISE[v] * gaussian(rng);
        }
        if rng.r#gen::<f64>() < settings.artefact_rate {
            match rng.gen_range(0..10) {
                // A probe slipping or poor perfusion: a low saturation that is not the patient's.
                0..5 => measured[3] = rng.gen_range(62.0..90.0),
                // Movement: the pulse counts motion too.
                5..8 => measured[0] += rng.gen_range(25.0..70.0),
                // A temperature probe out of place reads the room, not the patient.
                _ => measured[4] = rng.gen_range(33.0..35.5),
            }
        }
        let mut present = [true; 7];
        for (v, slot) in present.iter_mut().enumerate() {
            let rate = if v == 5 { (settings.missing_rate * 2.0).min(1.0) } else { settings.missing_rate };
            *slot = rng.r#gen::<f64>() >= rate;
        }
        if !present.contains(&true) {
            // A record carries at least one vital, or ingest has nothing to land.
            present[0] = true;
        }
        let oxygen_sent = rng.r#gen::<f64>() >= settings.missing_rate;
        let consciousness_sent = rng.r#gen::<f64>() >= settings.missing_rate;

        // Monitors report whole numbers except temperature (one decimal), and only what they can show.
        let shown = |v: usize| {
            let (lo, hi) = Vital::ALL[v].possible_range();
            let value = if v == 4 { (measured[v] * 10.0).round() / 10.0 } else { measured[v].round() };
            present[v].then_some(value.clamp(lo, hi))
        };
        let record = VitalsRecord {
            patient_id: patient.id.clone(),
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            heart_rate: shown(0),
            systolic_bp: shown(1),
            diastolic_bp: shown(2),
            spo2: shown(3),
            temperature: shown(4),
            glucose: shown(5),
            respiratory_rate: shown(6),
            on_oxygen: oxygen_sent.then_some(on_oxygen),
            consciousness: consciousness_sent.then(|| consciousness.to_string()),
        };
        SimulatedReading { record, true_label, ward_label }
    }
}

/// LOINC code, display name and UCUM unit of each vital, in `Vital::ALL` order.
const LOINC: [(&str, &str, &str); 7] = [
    ("8867-4", "Heart rate", "/min"),
    ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%"),
    ("8310-5", "Body temperature", "Cel"),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL"),
    ("9279-1", "Respiratory rate", "/min"),
];

/// MDC term (number, reference id) and MDC unit (number, reference id) of each vital, in `Vital::ALL`
/// order, as a PCD-01 monitor reports them.
const MDC: [(u32, &str, u32, &str); 7] = [
    (147842, "MDC_ECG_HEART_RATE", 264864, "MDC_DIM_BEAT_PER_MIN"),
    (150021, "MDC_PRESS_BLD_NONINV_SYS", 266016, "MDC_DIM_MMHG"),
    (150022, "MDC_PRESS_BLD_NONINV_DIA", 266016, "MDC_DIM_MMHG"),
    (150456, "MDC_PULS_OXIM_SAT_O2", 262688, "MDC_DIM_PERCENT"),
    (150364, "MDC_TEMP_BODY", 268192, "MDC_DIM_DEGC"),
    (160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", 264274, "MDC_DIM_MILLI_G_PER_DL"),
    (151562, "MDC_RESP_RATE", 264928, "MDC_DIM_RESP_PER_MIN"),
];

/// A reading as an HL7 v2.6 ORU^R01 (IHE PCD-01): MSH, PID (the patient id, assigning authority
/// `VITALFLOW`), OBR and one OBX per measured vital; segments end in `\r`; times in UTC with their zone.
fn oru_r01(record: &VitalsRecord) -> String {
    let time = DateTime::parse_from_rfc3339(&record.timestamp)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y%m%d%H%M%S%.3f+0000").to_string())
        .unwrap_or_default();
    // HL7's delimiters in a patient id are escaped (the decoder reads them back).
    let patient = record
        .patient_id
        .replace('\\', "\\E\\")
        .replace('|', "\\F\\")
        .replace('^', "\\S\\")
        .replace('&', "\\T\\")
        .replace('~', "\\R\\");
    // MSH-10, unique per message: the patient and the reading's time.
    let control_id = format!("{patient}-{}", time.get(..18).unwrap_or_default().replace('.', ""));
    let mut message = format!(
        "MSH|^~\\&|VITALFLOW^SIMULATOR^L||||{time}||ORU^R01^ORU_R01|{control_id}|P|2.6|||NE|AL\r\
         PID|||{patient}^^^VITALFLOW^MR\r\
         OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{time}\r"
    );
    let mut n = 0;
    for ((code, name, unit, unit_name), value) in MDC.iter().zip(record.vitals()) {
        let Some(value) = value else { continue };
        n += 1;
        message.push_str(&format!(
            "OBX|{n}|NM|{code}^{name}^MDC|1.{n}.1.1|{value}|{unit}^{unit_name}^MDC|||||R|||{time}\r"
        ));
    }
    message
}

/// Encodes a reading in `format`.
pub fn encode(record: &VitalsRecord, format: OutputFormat) -> Vec<u8> {
    use serde_json::{Map, Value, json};
    let value = match format {
        OutputFormat::Hl7v2 => return oru_r01(record).into_bytes(),
        OutputFormat::Flat => serde_json::to_value(record).unwrap_or(Value::Null),
        OutputFormat::Aliases => {
            let mut obj = Map::new();
            obj.insert("patient_id".into(), record.patient_id.clone().into());
            let millis =
                DateTime::parse_from_rfc3339(&record.timestamp).map(|t| t.timestamp_millis()).unwrap_or_default();
            obj.insert("ts".into(), millis.into());
            for (vital, value) in Vital::ALL.iter().zip(record.vitals()) {
                if let Some(v) = value {
                    obj.insert(vital.aliases()[0].into(), v.into());
                }
            }
            if let Some(o) = record.on_oxygen {
                obj.insert("supplemental_oxygen".into(), o.into());
            }
            if let Some(c) = &record.consciousness {
                obj.insert("avpu".into(), c.clone().into());
            }
            Value::Object(obj)
        }
        OutputFormat::Fhir => {
            let subject = format!("Patient/{}", record.patient_id);
            let mut entries = vec![json!({"resource": {"resourceType": "Patient", "id": record.patient_id}})];
            for ((code, display, unit), value) in LOINC.iter().zip(record.vitals()) {
                let Some(v) = value else { continue };
                entries.push(json!({"resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                    "subject": {"reference": subject},
                    "effectiveDateTime": record.timestamp,
                    "valueQuantity": {"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
                }}));
            }
            json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Rows of measurements with the label of the patient's true state.
#[derive(Debug, Clone, Default)]
pub struct LabelledRows {
    /// Measured vitals in feature order.
    pub features: Vec<[f64; 6]>,
    /// Label from the true state.
    pub labels: Vec<RiskLevel>,
}

impl LabelledRows {
    /// SHA-256 of rows and labels, hex.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (row, label) in self.features.iter().zip(&self.labels) {
            for v in row {
                h.update(v.to_le_bytes());
            }
            h.update([crate::rubric::RiskLevel::ALL.iter().position(|l| l == label).unwrap_or(0) as u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Settings for training data: the realistic ward, with more frequent episodes so that every label
/// is well represented.
pub fn training_settings() -> SimulatorSettings {
    SimulatorSettings { episode_rate_per_hour: 0.6, ill_at_start: 0.6, ..SimulatorSettings::default() }
}

/// `n` rows of the six measured vitals with the label of the true state, from a simulated ward with
/// [`training_settings`]. Readings missing one of the six are skipped: the model gives NULL for them.
pub fn training_rows(n: usize, seed: u64) -> LabelledRows {
    labelled_rows(n, seed, training_settings())
}

/// `n` complete rows from a ward of 500 patients simulated with `settings`.
pub fn labelled_rows(n: usize, seed: u64, settings: SimulatorSettings) -> LabelledRows {
    let mut sim = VitalsSimulator::with_settings(500, seed, settings);
    let at = DateTime::<Utc>::UNIX_EPOCH;
    let mut rows = LabelledRows::default();
    while rows.features.len() < n {
        let r = sim.next_labelled(at);
        if let Some(six) = r.record.six() {
            rows.features.push(six);
            rows.labels.push(r.true_label);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:15:02.123Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn simulator_is_deterministic_and_covers_every_label() {
        let mut a = VitalsSimulator::new(50, 9);
        let mut b = VitalsSimulator::new(50, 9);
        let mut labels = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let r = a.next_labelled(at());
            assert_eq!(r, b.next_labelled(at()));
            labels.insert(r.true_label);
        }
        assert_eq!(labels.len(), 3, "{labels:?}");
        let json = String::from_utf8(a.next_payload(at()).1).unwrap();
        assert!(json.contains("\"timestamp\":\"2026-11-23T10:15:02.123Z\""), "{json}");
        assert_ne!(VitalsSimulator::new(50, 10).next_reading(at()), VitalsSimulator::new(50, 9).next_reading(at()));
    }

    #[test]
    fn episodes_unfold_and_recover() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let e = Episode::draw(&mut rng, 1_000.0);
        assert!(e.peak - e.start >= 600.0, "a build-up over minutes: {e:?}");
        assert_eq!(e.intensity(999.0), 0.0);
        let mid = e.intensity((e.start + e.peak) / 2.0);
        assert!(mid > 0.2 && mid < 0.8, "{mid}");
        assert_eq!(e.intensity(e.peak + 1.0), 1.0);
        assert_eq!(e.intensity(e.end + 1.0), 0.0);
        // One patient through a whole simulated day: ill for a while, well again afterwards.
        let settings =
            SimulatorSettings { ill_at_start: 1.0, episode_rate_per_hour: 0.0, ..SimulatorSettings::default() };
        let mut sim = VitalsSimulator::with_settings(1, 3, settings);
        let labels: Vec<RiskLevel> = (0..2_880).map(|_| sim.next_labelled(at()).true_label).collect();
        assert!(labels.iter().any(|l| *l != RiskLevel::Low), "never ill");
        assert!(labels[2_000..].iter().all(|l| *l == RiskLevel::Low), "never recovered");
    }

    #[test]
    fn default_ward_has_noise_artefacts_and_missing_fields_at_their_rates() {
        let mut sim = VitalsSimulator::new(50, 5);
        let n = 20_000;
        let records: Vec<VitalsRecord> = (0..n).map(|_| sim.next_reading(at())).collect();
        let missing_hr = records.iter().filter(|r| r.heart_rate.is_none()).count() as f64 / n as f64;
        let missing_glucose = records.iter().filter(|r| r.glucose.is_none()).count() as f64 / n as f64;
        assert!((0.01..0.03).contains(&missing_hr), "{missing_hr}");
        assert!((0.03..0.05).contains(&missing_glucose), "{missing_glucose}");
        assert!(records.iter().all(|r| r.vitals().iter().any(Option::is_some)));
        // Every value is one a monitor can show (ingest dead-letters impossible ones).
        for r in &records {
            for (vital, v) in Vital::ALL.iter().zip(r.vitals()) {
                let (lo, hi) = vital.possible_range();
                assert!(v.is_none_or(|v| (lo..=hi).contains(&v)), "{vital:?} {v:?}");
            }
        }
        // NEWS2 inputs are there for news2_score.
        assert!(records.iter().filter(|r| r.on_oxygen == Some(true)).count() > 100);
        assert!(records.iter().any(|r| r.consciousness.as_deref() == Some("V")));
    }

    #[test]
    fn pinned_settings_send_every_field_without_artefacts() {
        let clean = SimulatorSettings { artefact_rate: 0.0, missing_rate: 0.0, ..SimulatorSettings::default() };
        let mut sim = VitalsSimulator::with_settings(40, 11, clean);
        for _ in 0..2_000 {
            let r = sim.next_labelled(at());
            assert!(r.record.six().is_some() && r.record.respiratory_rate.is_some());
            assert!(r.record.on_oxygen.is_some() && r.record.consciousness.is_some());
            // Without artefacts, the measured SpO2 is within noise of a real saturation.
            let spo2 = r.record.spo2.unwrap();
            assert!(spo2 >= 60.0, "{spo2}");
        }
    }

    #[test]
    fn formats_carry_the_same_reading() {
        let mut sim = VitalsSimulator::with_settings(
            3,
            2,
            SimulatorSettings { missing_rate: 0.0, ..SimulatorSettings::default() },
        );
        let r = sim.next_reading(at());
        let aliases: serde_json::Value = serde_json::from_slice(&encode(&r, OutputFormat::Aliases)).unwrap();
        assert_eq!(aliases["hr"].as_f64(), r.heart_rate);
        assert_eq!(aliases["rr"].as_f64(), r.respiratory_rate);
        assert_eq!(aliases["ts"].as_i64(), Some(1_795_428_902_123));
        let fhir: serde_json::Value = serde_json::from_slice(&encode(&r, OutputFormat::Fhir)).unwrap();
        assert_eq!(fhir["resourceType"], "Bundle");
        let entries = fhir["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1 + 7);
        assert_eq!(entries[1]["resource"]["valueQuantity"]["value"].as_f64(), r.heart_rate);
        assert_eq!(OutputFormat::parse("fhir").unwrap(), OutputFormat::Fhir);
        assert!(OutputFormat::parse("xml").unwrap_err().to_string().contains("flat, aliases, fhir, hl7v2"));
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let bad = SimulatorSettings { artefact_rate: 1.5, ..SimulatorSettings::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("artefact_rate"));
        assert!(SimulatorSettings::default().validate().is_ok());
    }

    #[test]
    fn training_rows_are_balanced_enough() {
        let rows = training_rows(5_000, 3);
        let count = |l| rows.labels.iter().filter(|x| **x == l).count();
        assert!(count(RiskLevel::High) > 400, "only {} High rows", count(RiskLevel::High));
        assert!(count(RiskLevel::Medium) > 400, "only {} Medium rows", count(RiskLevel::Medium));
    }
}
