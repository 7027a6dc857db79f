#![doc = include_str!("../README.md")]

pub mod assignment;
pub mod batch;
pub mod client;
pub mod config;
pub mod dead_letter_topic;
pub mod decode;
pub mod error;
pub mod events;
pub mod fhir;
mod flat;
pub mod landed;
pub mod landing;
pub mod metrics;
pub mod produce;
mod service;
pub mod source;
pub mod store;

pub use config::{IngestConfig, KafkaConfig};
pub use error::{Error, Result};
pub use service::{IngestService, start};
pub use store::DataLocation;
