//! Kafka client settings shared by the consumer, the producer and the admin client.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// A librdkafka configuration with the brokers, the security keys and the user's extra properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    for (k, v) in kafka.security_properties() {
        c.set(k, v);
    }
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Maps an rdkafka error to ours, naming the operation.
pub(crate) fn kafka_err(op: &'static str) -> impl FnOnce(KafkaError) -> Error {
    move |source| Error::Kafka { op, source }
}

/// Creates the vitals topic with `partitions` partitions unless it exists. Brokers that auto-create
/// topics would make one with their default partition count; an embedded broker creates none.
pub async fn ensure_topic(kafka: &KafkaConfig, partitions: i32) -> Result<()> {
    kafka.validate()?;
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka).create().map_err(kafka_err("create admin client"))?;
    let topic = NewTopic::new(&kafka.topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&topic], &opts).await.map_err(kafka_err("create topic"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::warn!(topic = %name, "Topic creation failed.");
                return Err(Error::Kafka { op: "create topic", source: KafkaError::AdminOp(code) });
            }
        }
    }
    Ok(())
}
