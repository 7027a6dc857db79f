//! The optional dead-letter topic (`ingest.dead_letter_topic`): every dead letter of the table also
//! produced to Kafka, for tools that watch a topic rather than a table.
//!
//! The table stays the truth. A range's dead letters are produced, and acknowledged by the broker,
//! after its `dead_letters` file is written and before its `vitals_raw` file marks it complete; so every
//! dead letter in the table is on the topic at least once. A crash or a failed put in between replays the
//! range and produces its dead letters again: duplicates on the topic carry the same key,
//! `<source topic>-<source partition>-<source offset>`, to drop them by.
//!
//! Each message: the raw payload as value (none for a tombstone), that key, and the headers
//! `reason_code`, `reason`, `stage`, `source_topic`, `source_partition`, `source_offset`.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::batch::DeadLetter;
use crate::client::{client_config, kafka_err};
use crate::config::{IngestConfig, KafkaConfig};
use crate::error::{Error, Result};
use vitalflow_udf_model::lake::names::INGEST_STAGE;

/// A producer to the dead-letter topic.
pub(crate) struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterTopic {
    /// The producer, or `None` when no dead-letter topic is configured.
    pub(crate) fn new(kafka: &KafkaConfig, config: &IngestConfig) -> Result<Option<DeadLetterTopic>> {
        if config.dead_letter_topic.is_empty() {
            return Ok(None);
        }
        let producer = client_config(kafka)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // A dead letter can be as large as the largest message ingest accepts to read.
            .set("message.max.bytes", (config.max_message_bytes.max(1_000_000) + 64 * 1024).to_string())
            .create()
            .map_err(kafka_err("create dead-letter producer"))?;
        Ok(Some(DeadLetterTopic { producer, topic: config.dead_letter_topic.clone() }))
    }

    /// Produces `letters` and waits until the broker has every one.
    pub(crate) async fn send(&self, letters: &[DeadLetter]) -> Result<()> {
        let mut deliveries = Vec::with_capacity(letters.len());
        for l in letters {
            let p = &l.position;
            let key = format!("{}-{}-{}", p.topic, p.partition, p.offset);
            let (partition, offset) = (p.partition.to_string(), p.offset.to_string());
            let headers = [
                ("reason_code", l.rejection.code.as_str()),
                ("reason", l.rejection.reason.as_str()),
                ("stage", INGEST_STAGE),
                ("source_topic", p.topic.as_str()),
                ("source_partition", partition.as_str()),
                ("source_offset", offset.as_str()),
            ]
            .into_iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
            let mut record = FutureRecord::to(&self.topic).key(&key).headers(headers);
            if !l.payload.is_empty() {
                record = record.payload(&l.payload);
            }
            deliveries.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| Error::Kafka { op: "produce dead letter", source: e })?,
            );
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => return Err(Error::Kafka { op: "produce dead letter", source }),
                Err(_) => {
                    return Err(Error::Kafka {
                        op: "produce dead letter",
                        source: rdkafka::error::KafkaError::Canceled,
                    });
                }
            }
        }
        Ok(())
    }
}
