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
pub mod hl7;
pub mod landing;
pub mod metrics;
pub mod movement;
pub mod produce;
pub mod prometheus;
pub mod reading;
mod service;
pub mod source;
pub mod topic_id;

pub use config::{IngestConfig, KafkaConfig};
pub use error::{Error, Result};
pub use service::{IngestService, start};
