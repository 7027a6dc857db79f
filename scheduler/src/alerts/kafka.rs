//! The Kafka sink: each message one Kafka message on `alerts.kafka_topic`, keyed by patient id (a
//! patient's alerts stay in order on one partition), value its JSON, with its headers (`alert_id`; an
//! `alert_event` also `event_id` and `type`).

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vitalflow_ingest::KafkaConfig;
use vitalflow_ingest::client::{client_config, ensure_topic};

use super::Outgoing;
use crate::error::{Error, Result};

/// Name of the sink in logs, metrics and its checkpoint.
pub(super) const NAME: &str = "kafka";

pub(super) struct KafkaSink {
    producer: FutureProducer,
    /// `[kafka]` with the alerts topic, for creating it.
    kafka: KafkaConfig,
    /// Whether creating the topic has been tried (once per process).
    topic_checked: bool,
}

fn failed(reason: impl std::fmt::Display) -> Error {
    Error::Delivery { sink: NAME, reason: reason.to_string() }
}

impl KafkaSink {
    /// A producer with `[kafka]`'s brokers and security settings; a broker that has not acknowledged
    /// a message within `timeout` fails the attempt.
    pub(super) fn new(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<KafkaSink> {
        kafka.validate()?;
        let producer = client_config(kafka)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .create()
            .map_err(|e| failed(format!("creating the producer: {e}")))?;
        Ok(KafkaSink {
            producer,
            kafka: KafkaConfig { topic: topic.to_string(), ..kafka.clone() },
            topic_checked: false,
        })
    }

    /// Produces `messages` and waits until the broker has every one.
    pub(super) async fn send(&mut self, messages: &[Outgoing]) -> Result<()> {
        if !self.topic_checked {
            // An embedded broker creates no topic on its own; a cluster that denies creating one may
            // still have it (or auto-create it), so a refusal is only a warning and producing decides.
            if let Err(error) = ensure_topic(&self.kafka, 1).await {
                tracing::warn!(topic = %self.kafka.topic, error = %error, "Could not create the alerts topic; producing to it anyway.");
            }
            self.topic_checked = true;
        }
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let payload = serde_json::to_vec(&message.body).map_err(|e| failed(format!("encoding a message: {e}")))?;
            let headers = message
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value.as_str()) }));
            let record = FutureRecord::to(&self.kafka.topic).key(&message.key).payload(&payload).headers(headers);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(e, _)| failed(format!("producing to {}: {e}", self.kafka.topic)))?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(failed(format!("producing to {}: {e}", self.kafka.topic))),
                Err(_) => return Err(failed("the producer dropped a delivery report")),
            }
        }
        Ok(())
    }
}
