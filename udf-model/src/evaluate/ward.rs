//! The simulated held-out ward `vitalflow evaluate` scores: its settings and the readings it gives, each
//! patient's readings `seconds_per_reading` apart on a simulated clock.

use chrono::{DateTime, Duration, Utc};

use crate::error::{Error, Result};
use crate::simulate::{SimulatedReading, SimulatorSettings, VitalsSimulator};

/// The seed `vitalflow train` draws its training rows from (`TrainArgs::seed`); the held-out rows use the
/// next, and the trend model's calibration ward the one after. The evaluation ward should use none of
/// them, or it would score patients the model learnt from.
pub const TRAINING_SEEDS: [u64; 3] = [7, 8, 9];

/// The first reading's time: 2026-12-01T00:00:00Z (only the spacing of readings matters).
const WARD_START_UNIX_SECONDS: i64 = 1_796_083_200;

/// The longest ward stay simulated, hours (a year: the clock stays far inside `DateTime`'s range).
const MAX_HOURS: f64 = 24.0 * 366.0;

/// The held-out ward: how many patients, for how long, how often each is measured, and the seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WardSettings {
    /// Patients on the ward.
    pub patients: usize,
    /// Simulated hours each patient is observed.
    pub hours: f64,
    /// Simulator seed; not a training seed ([`TRAINING_SEEDS`]).
    pub seed: u64,
    /// Seconds between two readings of one patient: 300 is one reading per patient per 5 minutes, which
    /// keeps the default ward at 2000 × 48 h × 12 = 1.15M readings.
    pub seconds_per_reading: f64,
    /// New deterioration episodes per patient per hour (the simulator's 0.15 gives about 90 episodes per
    /// 35 patients per day, far more than a real ward's few, so that every label is common).
    pub episode_rate_per_hour: f64,
    /// Share of patients in an episode when the ward starts.
    pub ill_at_start: f64,
}

impl Default for WardSettings {
    fn default() -> Self {
        let simulator = SimulatorSettings::default();
        WardSettings {
            patients: 2_000,
            hours: 48.0,
            seed: 2026,
            seconds_per_reading: 300.0,
            episode_rate_per_hour: simulator.episode_rate_per_hour,
            ill_at_start: simulator.ill_at_start,
        }
    }
}

impl WardSettings {
    /// The simulator's settings: the realistic ward (episodes, artefacts, missing fields) at this pace
    /// and episode rate.
    pub fn simulator_settings(&self) -> SimulatorSettings {
        SimulatorSettings {
            seconds_per_reading: self.seconds_per_reading,
            episode_rate_per_hour: self.episode_rate_per_hour,
            ill_at_start: self.ill_at_start,
            ..SimulatorSettings::default()
        }
    }

    /// Readings of each patient: as many whole reading intervals as fit in `hours`.
    pub fn readings_per_patient(&self) -> usize {
        (self.hours * 3_600.0 / self.seconds_per_reading).floor() as usize
    }

    /// Checks the ranges; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        self.simulator_settings().validate()?;
        if self.patients == 0 {
            return Err(Error::Config("evaluate: --patients is 0: the ward needs at least one patient".into()));
        }
        if !(self.hours > 0.0 && self.hours <= MAX_HOURS) {
            return Err(Error::Config(format!(
                "evaluate: --hours is {}: use more than 0 and at most {MAX_HOURS}",
                self.hours
            )));
        }
        if self.readings_per_patient() == 0 {
            return Err(Error::Config(format!(
                "evaluate: --hours {} holds no reading {} seconds apart: give more hours or fewer seconds per reading",
                self.hours, self.seconds_per_reading
            )));
        }
        Ok(())
    }
}

/// The ward's readings in time order: at each tick every patient in turn, stamped with the simulated
/// clock, so that one patient's readings are `seconds_per_reading` apart.
#[derive(Debug, Clone)]
pub struct SimulatedWard {
    simulator: VitalsSimulator,
    start: DateTime<Utc>,
    seconds_per_reading: f64,
    ticks: usize,
    tick: usize,
    patient: usize,
}

impl SimulatedWard {
    /// The ward of `settings` (validate them first: an invalid ward gives its readings all the same).
    pub fn new(settings: &WardSettings) -> SimulatedWard {
        SimulatedWard {
            simulator: VitalsSimulator::with_settings(settings.patients, settings.seed, settings.simulator_settings()),
            start: DateTime::from_timestamp(WARD_START_UNIX_SECONDS, 0).unwrap_or_default(),
            seconds_per_reading: settings.seconds_per_reading,
            ticks: settings.readings_per_patient(),
            tick: 0,
            patient: 0,
        }
    }
}

impl Iterator for SimulatedWard {
    type Item = SimulatedReading;

    fn next(&mut self) -> Option<SimulatedReading> {
        if self.tick >= self.ticks {
            return None;
        }
        let millis = (self.tick as f64 * self.seconds_per_reading * 1_000.0).round() as i64;
        let at =
            Duration::try_milliseconds(millis).and_then(|d| self.start.checked_add_signed(d)).unwrap_or(self.start);
        let reading = self.simulator.next_labelled(at);
        self.patient += 1;
        if self.patient >= self.simulator.patient_count() {
            self.patient = 0;
            self.tick += 1;
        }
        Some(reading)
    }
}
