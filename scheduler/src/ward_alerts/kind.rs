//! What an alert is about: a patient's risk rising to High, a patient whose readings stopped, or the
//! whole feed stopped. All three live through the same lifecycle.

use serde::{Deserialize, Serialize};

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The patient's risk rose to High (a `risk_alerts` row passed the ward's muting rule).
    #[default]
    Risk,
    /// No reading of the patient for the ward's `no_data_minutes` while the ward's other patients'
    /// readings went on.
    NoData,
    /// No reading of any patient for `feed_down_minutes` (ingest, Kafka or the ETL stopped).
    FeedDown,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 3] = [AlertKind::Risk, AlertKind::NoData, AlertKind::FeedDown];

    /// The kind's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Risk => "risk",
            AlertKind::NoData => "no_data",
            AlertKind::FeedDown => "feed_down",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
