//! The clinical rubric (`docs/clinical-rubric.md`): NEWS2 points per parameter, the six-feature
//! rubric that labels training data, and the NEWS2 aggregate.
//!
//! Temperature is scored on its value rounded to one decimal and every other parameter on its value
//! rounded to a whole number, so that a value between two published bands falls in exactly one band.

use std::fmt;

/// The model's three risk classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RiskLevel {
    /// Aggregate 7 or more.
    High,
    /// Aggregate 5–6, or 3 points in any single parameter.
    Medium,
    /// Everything else.
    Low,
}

impl RiskLevel {
    /// All classes, in the order the model file stores them.
    pub const ALL: [RiskLevel; 3] = [RiskLevel::High, RiskLevel::Medium, RiskLevel::Low];

    /// The label users see in SQL and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::High => "High",
            RiskLevel::Medium => "Medium",
            RiskLevel::Low => "Low",
        }
    }

    /// Parses the label users see.
    pub fn parse(label: &str) -> Option<RiskLevel> {
        RiskLevel::ALL.into_iter().find(|l| l.as_str() == label)
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Level of consciousness on the ACVPU scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consciousness {
    /// Alert.
    Alert,
    /// New confusion.
    Confused,
    /// Responds to voice.
    Voice,
    /// Responds to pain.
    Pain,
    /// Unresponsive.
    Unresponsive,
}

impl Consciousness {
    /// Parses the ACVPU letter (either case) or the word.
    pub fn parse(text: &str) -> Option<Consciousness> {
        match text.trim().to_ascii_uppercase().as_str() {
            "A" | "ALERT" => Some(Consciousness::Alert),
            "C" | "CONFUSED" | "CONFUSION" | "NEW CONFUSION" => Some(Consciousness::Confused),
            "V" | "VOICE" => Some(Consciousness::Voice),
            "P" | "PAIN" => Some(Consciousness::Pain),
            "U" | "UNRESPONSIVE" => Some(Consciousness::Unresponsive),
            _ => None,
        }
    }

    /// The ACVPU letter stored in tables.
    pub fn letter(self) -> &'static str {
        match self {
            Consciousness::Alert => "A",
            Consciousness::Confused => "C",
            Consciousness::Voice => "V",
            Consciousness::Pain => "P",
            Consciousness::Unresponsive => "U",
        }
    }
}

/// A whole number for banding; `None` for NaN or infinity, which no band holds.
fn whole(value: f64) -> Option<i64> {
    value.is_finite().then(|| value.round() as i64)
}

/// Pulse, beats/min (NEWS2).
pub fn heart_rate_points(bpm: f64) -> Option<u8> {
    Some(match whole(bpm)? {
        ..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        _ => 3,
    })
}

/// Systolic blood pressure, mmHg (NEWS2).
pub fn systolic_bp_points(mmhg: f64) -> Option<u8> {
    Some(match whole(mmhg)? {
        ..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        _ => 3,
    })
}

/// Diastolic blood pressure, mmHg (ACC/AHA 2017 bands).
pub fn diastolic_bp_points(mmhg: f64) -> Option<u8> {
    Some(match whole(mmhg)? {
        ..=49 => 2,
        50..=89 => 0,
        90..=119 => 1,
        _ => 3,
    })
}

/// SpO2 scale 1, percent (NEWS2).
pub fn spo2_points(percent: f64) -> Option<u8> {
    Some(match whole(percent)? {
        ..=91 => 3,
        92..=93 => 2,
        94..=95 => 1,
        _ => 0,
    })
}

/// SpO2 scale 2, percent (NEWS2, for hypercapnic respiratory failure): 88–92 scores 0, and so does 93 or
/// more on air; on oxygen 93–94, 95–96 and 97 or more score 1, 2 and 3 (over-oxygenation).
pub fn spo2_scale2_points(percent: f64, on_oxygen: bool) -> Option<u8> {
    Some(match whole(percent)? {
        ..=83 => 3,
        84..=85 => 2,
        86..=87 => 1,
        88..=92 => 0,
        _ if !on_oxygen => 0,
        93..=94 => 1,
        95..=96 => 2,
        _ => 3,
    })
}

/// Which NEWS2 SpO2 scale a patient is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spo2Scale {
    /// Scale 1: every patient unless prescribed otherwise.
    #[default]
    One,
    /// Scale 2: a target range of 88–92 % prescribed for hypercapnic respiratory failure (e.g. COPD).
    Two,
}

impl Spo2Scale {
    /// The scale of its number (1 or 2), as records and tables write it.
    pub fn of_number(number: i64) -> Option<Spo2Scale> {
        match number {
            1 => Some(Spo2Scale::One),
            2 => Some(Spo2Scale::Two),
            _ => None,
        }
    }

    /// Its number, as the tables store it.
    pub fn number(self) -> i32 {
        match self {
            Spo2Scale::One => 1,
            Spo2Scale::Two => 2,
        }
    }

    /// NEWS2 points of `percent` on this scale (oxygen matters only on scale 2).
    pub fn points(self, percent: f64, on_oxygen: bool) -> Option<u8> {
        match self {
            Spo2Scale::One => spo2_points(percent),
            Spo2Scale::Two => spo2_scale2_points(percent, on_oxygen),
        }
    }
}

/// Temperature, °C, scored on its value rounded to one decimal (NEWS2).
pub fn temperature_points(celsius: f64) -> Option<u8> {
    // Work in whole tenths so that 35.0 and 35.1 compare exactly.
    let tenths = whole(celsius * 10.0)?;
    Some(match tenths {
        ..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        _ => 2,
    })
}

/// Blood glucose, mg/dL (ADA hypoglycaemia levels; hyperglycaemia bands of the rubric).
pub fn glucose_points(mg_dl: f64) -> Option<u8> {
    Some(match whole(mg_dl)? {
        ..=53 => 3,
        54..=69 => 2,
        70..=180 => 0,
        181..=250 => 1,
        251..=399 => 2,
        _ => 3,
    })
}

/// Respiration rate, breaths/min (NEWS2).
pub fn respiratory_rate_points(per_min: f64) -> Option<u8> {
    Some(match whole(per_min)? {
        ..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        _ => 3,
    })
}

/// Supplemental oxygen (NEWS2): 2 points on oxygen, 0 on air.
pub fn oxygen_points(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Consciousness (NEWS2): 0 when alert, 3 for new confusion, voice, pain or unresponsive.
pub fn consciousness_points(level: Consciousness) -> u8 {
    if level == Consciousness::Alert { 0 } else { 3 }
}

/// The six vitals the model and the labelling rubric see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SixVitals {
    /// Pulse, beats/min.
    pub heart_rate: f64,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: f64,
    /// Diastolic blood pressure, mmHg.
    pub diastolic_bp: f64,
    /// SpO2, percent.
    pub spo2: f64,
    /// Temperature, °C.
    pub temperature: f64,
    /// Glucose, mg/dL.
    pub glucose: f64,
}

impl SixVitals {
    /// The values in the model's feature order (`schema::MODEL_FEATURES`).
    pub fn to_array(self) -> [f64; 6] {
        [self.heart_rate, self.systolic_bp, self.diastolic_bp, self.spo2, self.temperature, self.glucose]
    }

    /// Builds from values in the model's feature order.
    pub fn from_array(v: [f64; 6]) -> SixVitals {
        SixVitals {
            heart_rate: v[0],
            systolic_bp: v[1],
            diastolic_bp: v[2],
            spo2: v[3],
            temperature: v[4],
            glucose: v[5],
        }
    }

    /// Points per parameter, in feature order; `None` if any value is NaN or infinite.
    pub fn points(self) -> Option<[u8; 6]> {
        Some([
            heart_rate_points(self.heart_rate)?,
            systolic_bp_points(self.systolic_bp)?,
            diastolic_bp_points(self.diastolic_bp)?,
            spo2_points(self.spo2)?,
            temperature_points(self.temperature)?,
            glucose_points(self.glucose)?,
        ])
    }

    /// The rubric's aggregate over the six parameters.
    pub fn rubric_score(self) -> Option<u8> {
        Some(self.points()?.iter().sum())
    }

    /// The rubric's label: High at 7 or more; Medium at 5–6 or a 3 in any parameter; Low otherwise.
    pub fn rubric_label(self) -> Option<RiskLevel> {
        let points = self.points()?;
        let total: u8 = points.iter().sum();
        Some(if total >= 7 {
            RiskLevel::High
        } else if total >= 5 || points.contains(&3) {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        })
    }
}

/// The seven NEWS2 inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct News2Inputs {
    /// Respiration rate, breaths/min.
    pub respiratory_rate: f64,
    /// SpO2, percent, scored on `spo2_scale`.
    pub spo2: f64,
    /// On supplemental oxygen.
    pub on_oxygen: bool,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: f64,
    /// Pulse, beats/min.
    pub heart_rate: f64,
    /// ACVPU level.
    pub consciousness: Consciousness,
    /// Temperature, °C.
    pub temperature: f64,
    /// The SpO2 scale the patient is prescribed.
    pub spo2_scale: Spo2Scale,
}

impl News2Inputs {
    /// The NEWS2 aggregate score (0–20).
    pub fn score(self) -> Option<u8> {
        Some(
            respiratory_rate_points(self.respiratory_rate)?
                + self.spo2_scale.points(self.spo2, self.on_oxygen)?
                + oxygen_points(self.on_oxygen)
                + systolic_bp_points(self.systolic_bp)?
                + heart_rate_points(self.heart_rate)?
                + consciousness_points(self.consciousness)
                + temperature_points(self.temperature)?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case is (value, points): both sides of every published band edge.
    fn check(name: &str, f: fn(f64) -> Option<u8>, cases: &[(f64, u8)]) {
        for &(value, points) in cases {
            assert_eq!(f(value), Some(points), "{name} at {value}");
        }
    }

    #[test]
    fn heart_rate_band_edges() {
        let cases = [
            (30.0, 3),
            (40.0, 3),
            (41.0, 1),
            (50.0, 1),
            (51.0, 0),
            (90.0, 0),
            (91.0, 1),
            (110.0, 1),
            (111.0, 2),
            (130.0, 2),
            (131.0, 3),
            (200.0, 3),
            // Between whole numbers: rounded first.
            (40.4, 3),
            (40.5, 1),
            (90.49, 0),
            (90.5, 1),
        ];
        check("heart rate", heart_rate_points, &cases);
    }

    #[test]
    fn systolic_band_edges() {
        let cases =
            [(90.0, 3), (91.0, 2), (100.0, 2), (101.0, 1), (110.0, 1), (111.0, 0), (219.0, 0), (220.0, 3), (100.6, 1)];
        check("systolic", systolic_bp_points, &cases);
    }

    #[test]
    fn diastolic_band_edges() {
        let cases = [(49.0, 2), (50.0, 0), (89.0, 0), (90.0, 1), (119.0, 1), (120.0, 3), (30.0, 2)];
        check("diastolic", diastolic_bp_points, &cases);
    }

    #[test]
    fn spo2_band_edges() {
        let cases = [(91.0, 3), (92.0, 2), (93.0, 2), (94.0, 1), (95.0, 1), (96.0, 0), (100.0, 0), (95.5, 0)];
        check("spo2", spo2_points, &cases);
    }

    /// Scale 2 at every edge of RCP 2017 chart 1, on air and on oxygen (both sides of each edge).
    #[test]
    fn spo2_scale2_band_edges() {
        let both = [(83.0, 3), (84.0, 2), (85.0, 2), (86.0, 1), (87.0, 1), (88.0, 0), (92.0, 0), (87.6, 0)];
        for on_oxygen in [false, true] {
            for (percent, points) in both {
                assert_eq!(spo2_scale2_points(percent, on_oxygen), Some(points), "{percent} on oxygen {on_oxygen}");
            }
        }
        let air = [(93.0, 0), (94.0, 0), (95.0, 0), (96.0, 0), (97.0, 0), (100.0, 0)];
        let oxygen = [(93.0, 1), (94.0, 1), (95.0, 2), (96.0, 2), (97.0, 3), (100.0, 3), (92.4, 0), (92.6, 1)];
        for (on_oxygen, cases) in [(false, &air[..]), (true, &oxygen[..])] {
            for &(percent, points) in cases {
                assert_eq!(spo2_scale2_points(percent, on_oxygen), Some(points), "{percent} on oxygen {on_oxygen}");
                assert_eq!(Spo2Scale::Two.points(percent, on_oxygen), Some(points));
            }
        }
        // Scale 1 ignores oxygen; NaN has no band on either scale.
        assert_eq!((Spo2Scale::One.points(97.0, true), Spo2Scale::One.points(91.0, false)), (Some(0), Some(3)));
        assert_eq!(spo2_scale2_points(f64::NAN, true), None);
        assert_eq!([1, 2, 0, 3].map(Spo2Scale::of_number), [Some(Spo2Scale::One), Some(Spo2Scale::Two), None, None]);
    }

    #[test]
    fn temperature_band_edges() {
        let cases = [
            (35.0, 3),
            (35.1, 1),
            (36.0, 1),
            (36.1, 0),
            (38.0, 0),
            (38.1, 1),
            (39.0, 1),
            (39.1, 2),
            (34.0, 3),
            (41.0, 2),
            // Rounded to one decimal first: 35.04 is 35.0, 38.06 is 38.1.
            (35.04, 3),
            (38.06, 1),
            (36.04, 1),
        ];
        check("temperature", temperature_points, &cases);
    }

    #[test]
    fn glucose_band_edges() {
        let cases = [
            (53.0, 3),
            (54.0, 2),
            (69.0, 2),
            (70.0, 0),
            (180.0, 0),
            (181.0, 1),
            (250.0, 1),
            (251.0, 2),
            (399.0, 2),
            (400.0, 3),
            (53.6, 2),
        ];
        check("glucose", glucose_points, &cases);
    }

    #[test]
    fn respiratory_rate_band_edges() {
        let cases = [(8.0, 3), (9.0, 1), (11.0, 1), (12.0, 0), (20.0, 0), (21.0, 2), (24.0, 2), (25.0, 3)];
        check("respiratory rate", respiratory_rate_points, &cases);
    }

    #[test]
    fn oxygen_and_consciousness_points() {
        assert_eq!((oxygen_points(false), oxygen_points(true)), (0, 2));
        assert_eq!(consciousness_points(Consciousness::Alert), 0);
        for level in [Consciousness::Confused, Consciousness::Voice, Consciousness::Pain, Consciousness::Unresponsive] {
            assert_eq!(consciousness_points(level), 3, "{level:?}");
        }
    }

    #[test]
    fn label_edges_six_and_seven_four_and_five() {
        // Totals on both sides of the label edges, without a single 3.
        let six = SixVitals { heart_rate: 120.0, systolic_bp: 95.0, diastolic_bp: 95.0, glucose: 200.0, ..normal() };
        assert_eq!((six.rubric_score(), six.rubric_label()), (Some(6), Some(RiskLevel::Medium)));
        let seven = SixVitals { temperature: 38.5, ..six };
        assert_eq!((seven.rubric_score(), seven.rubric_label()), (Some(7), Some(RiskLevel::High)));
        let nan = SixVitals { glucose: f64::NAN, ..seven };
        assert_eq!((nan.rubric_score(), nan.rubric_label()), (None, None));
    }

    #[test]
    fn non_finite_values_have_no_band() {
        assert_eq!(heart_rate_points(f64::NAN), None);
        assert_eq!(temperature_points(f64::INFINITY), None);
    }

    fn normal() -> SixVitals {
        SixVitals::from_array([75.0, 120.0, 80.0, 98.0, 36.8, 100.0])
    }

    #[test]
    fn labels_follow_the_rubric() {
        assert_eq!(normal().rubric_label(), Some(RiskLevel::Low));
        // A single 3 makes Medium even though the total is 3.
        let one_three = SixVitals { spo2: 90.0, ..normal() };
        assert_eq!(one_three.rubric_score(), Some(3));
        assert_eq!(one_three.rubric_label(), Some(RiskLevel::Medium));
        // 4 points without a 3 stays Low; 5 is Medium; 7 is High.
        let four = SixVitals { heart_rate: 120.0, diastolic_bp: 95.0, glucose: 200.0, ..normal() };
        assert_eq!(four.rubric_score(), Some(4));
        assert_eq!(four.rubric_label(), Some(RiskLevel::Low));
        let five = SixVitals { temperature: 38.5, ..four };
        assert_eq!(five.rubric_label(), Some(RiskLevel::Medium));
        let seven = SixVitals { temperature: 39.5, glucose: 300.0, ..four };
        assert_eq!(seven.rubric_score(), Some(7));
        assert_eq!(seven.rubric_label(), Some(RiskLevel::High));
    }

    #[test]
    fn news2_aggregate() {
        let calm = News2Inputs {
            respiratory_rate: 16.0,
            spo2: 97.0,
            on_oxygen: false,
            systolic_bp: 125.0,
            heart_rate: 72.0,
            consciousness: Consciousness::Alert,
            temperature: 36.7,
            spo2_scale: Spo2Scale::One,
        };
        assert_eq!(calm.score(), Some(0));
        // Scale 2: 90 % on air is the prescribed target (0, where scale 1 gives 3); 97 % on oxygen is 3 + 2.
        let target = News2Inputs { spo2: 90.0, spo2_scale: Spo2Scale::Two, ..calm };
        assert_eq!((target.score(), News2Inputs { spo2_scale: Spo2Scale::One, ..target }.score()), (Some(0), Some(3)));
        let over = News2Inputs { spo2: 97.0, on_oxygen: true, ..target };
        assert_eq!(over.score(), Some(5));
        let sick = News2Inputs {
            respiratory_rate: 26.0,              // 3
            spo2: 93.0,                          // 2
            on_oxygen: true,                     // 2
            systolic_bp: 95.0,                   // 2
            heart_rate: 125.0,                   // 2
            consciousness: Consciousness::Voice, // 3
            temperature: 39.4,                   // 2
            spo2_scale: Spo2Scale::One,
        };
        assert_eq!(sick.score(), Some(16));
    }

    #[test]
    fn consciousness_parses_letters_and_words() {
        assert_eq!(Consciousness::parse("a"), Some(Consciousness::Alert));
        assert_eq!(Consciousness::parse("Unresponsive"), Some(Consciousness::Unresponsive));
        assert_eq!(Consciousness::parse("X"), None);
    }
}
