//! Kafka client settings shared by the consumer, the producer and the admin client.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use vitalflow_udf_model::lake::names::KafkaSource;

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

/// `error` as the reason the brokers refused this client (credentials or TLS: retrying cannot help),
/// or `None` for any other error.
pub(crate) fn refusal_reason(error: &KafkaError, reason: &str) -> Option<String> {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL)
    )
    .then(|| format!("{error}: {reason}"))
}

/// The context of a short-lived client: keeps the first refusal it hears of, logs other errors.
#[derive(Default)]
struct RefusalRecorder {
    refusal: Mutex<Option<String>>,
}

impl RefusalRecorder {
    fn record(&self, error: &KafkaError, reason: &str) {
        match refusal_reason(error, reason) {
            Some(refusal) => {
                self.refusal.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(refusal);
            }
            None => tracing::warn!(error = %error, reason, "Kafka client error."),
        }
    }

    fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl ClientContext for RefusalRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&error, reason);
    }
}

impl ConsumerContext for RefusalRecorder {}

/// How long the brokers have to tell their cluster id.
const CLUSTER_ID_TIMEOUT: Duration = Duration::from_secs(30);

/// The brokers' cluster id, asked in short rounds so that a refusal (a wrong password, TLS) is named
/// at once rather than after the whole timeout; `Ok(None)` when they never tell it.
fn fetch_cluster_id(config: ClientConfig, brokers: String) -> Result<Option<String>> {
    let client: BaseConsumer<RefusalRecorder> =
        config.create_with_context(RefusalRecorder::default()).map_err(kafka_err("create metadata client"))?;
    let deadline = Instant::now() + CLUSTER_ID_TIMEOUT;
    loop {
        if let Some(id) = client.client().fetch_cluster_id(Duration::from_secs(1)).filter(|id| !id.is_empty()) {
            return Ok(Some(id));
        }
        // Serves the client's events: errors reach the context, or come back from the poll.
        if let Some(Err(error)) = client.poll(Duration::from_millis(100)) {
            client.context().record(&error, "");
        }
        if let Some(reason) = client.context().refusal() {
            return Err(Error::Refused { brokers, reason });
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// The cluster and topic ingest reads, as the brokers identify them. Brokers that report no cluster
/// id (Kafka before 0.10.1) are refused: positions of different clusters would be mixed up.
pub async fn kafka_source(kafka: &KafkaConfig) -> Result<KafkaSource> {
    let config = client_config(kafka);
    let brokers = kafka.brokers.clone();
    let asked = brokers.clone();
    let cluster_id = tokio::task::spawn_blocking(move || fetch_cluster_id(config, asked))
        .await
        .map_err(|e| Error::Config(format!("fetching the Kafka cluster id: {e}")))??;
    let cluster_id = cluster_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        Error::Config(format!(
            "the Kafka brokers at {brokers} reported no cluster id (unreachable, or older than 0.10.1)"
        ))
    })?;
    Ok(KafkaSource { cluster_id, topic: kafka.topic.clone(), topic_id: String::new() })
}
