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
use crate::topic_id::{TopicId, describe_topic_id};

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

/// How long the brokers have to tell their cluster id and the topic's id.
const CLUSTER_ID_TIMEOUT: Duration = Duration::from_secs(30);
/// One DescribeTopics round; rounds repeat until [`CLUSTER_ID_TIMEOUT`].
const TOPIC_ID_ROUND: Duration = Duration::from_secs(5);

/// A short-lived client for metadata questions, which names a refusal (a wrong password, TLS) at once.
fn metadata_client(config: ClientConfig) -> Result<BaseConsumer<RefusalRecorder>> {
    config.create_with_context(RefusalRecorder::default()).map_err(kafka_err("create metadata client"))
}

/// The brokers' cluster id, asked in short rounds so that a refusal is named at once rather than after
/// the whole timeout; `Ok(None)` when they never tell it.
fn wait_cluster_id(client: &BaseConsumer<RefusalRecorder>, brokers: &str, deadline: Instant) -> Result<Option<String>> {
    loop {
        if let Some(id) = client.client().fetch_cluster_id(Duration::from_secs(1)).filter(|id| !id.is_empty()) {
            return Ok(Some(id));
        }
        // Serves the client's events: errors reach the context, or come back from the poll.
        if let Some(Err(error)) = client.poll(Duration::from_millis(100)) {
            client.context().record(&error, "");
        }
        if let Some(reason) = client.context().refusal() {
            return Err(Error::Refused { brokers: brokers.to_string(), reason });
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// The topic's id, asked until the brokers answer or `deadline` passes.
fn wait_topic_id(
    client: &BaseConsumer<RefusalRecorder>,
    brokers: &str,
    topic: &str,
    deadline: Instant,
) -> Result<TopicId> {
    loop {
        match describe_topic_id(client.client(), topic, TOPIC_ID_ROUND) {
            Ok(id) => return Ok(id),
            Err(reason) => {
                if let Some(refusal) = client.context().refusal() {
                    return Err(Error::Refused { brokers: brokers.to_string(), reason: refusal });
                }
                if Instant::now() >= deadline {
                    return Err(Error::Config(format!("reading the id of topic {topic:?} from {brokers}: {reason}")));
                }
                tracing::warn!(topic, reason, "Reading the topic's id failed; retrying.");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The cluster and topic ingest reads, as the brokers identify them, and what they said of the topic's
/// id: [`TopicId::Absent`] means the topic does not exist yet, and its id is still to be read (by
/// [`read_topic_id`]) before anything is landed from it. Brokers that report no cluster id (Kafka before
/// 0.10.1) are refused: positions of different clusters would be mixed up.
pub async fn kafka_source(kafka: &KafkaConfig) -> Result<(KafkaSource, TopicId)> {
    let config = client_config(kafka);
    let (brokers, topic) = (kafka.brokers.clone(), kafka.topic.clone());
    let (cluster_id, topic_id) = tokio::task::spawn_blocking(move || -> Result<_> {
        let client = metadata_client(config)?;
        let deadline = Instant::now() + CLUSTER_ID_TIMEOUT;
        let Some(cluster_id) = wait_cluster_id(&client, &brokers, deadline)? else {
            return Ok((None, TopicId::Absent));
        };
        Ok((Some(cluster_id), wait_topic_id(&client, &brokers, &topic, deadline)?))
    })
    .await
    .map_err(|e| Error::Config(format!("fetching the Kafka cluster id: {e}")))??;
    let cluster_id = cluster_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        Error::Config(format!(
            "the Kafka brokers at {} reported no cluster id (unreachable, or older than 0.10.1)",
            kafka.brokers
        ))
    })?;
    let known = match &topic_id {
        TopicId::Known(id) => id.clone(),
        TopicId::Absent | TopicId::Unsupported => String::new(),
    };
    Ok((KafkaSource { cluster_id, topic: kafka.topic.clone(), topic_id: known }, topic_id))
}

/// The vitals topic's id as the brokers tell it now.
pub async fn read_topic_id(kafka: &KafkaConfig) -> Result<TopicId> {
    let config = client_config(kafka);
    let (brokers, topic) = (kafka.brokers.clone(), kafka.topic.clone());
    tokio::task::spawn_blocking(move || {
        let client = metadata_client(config)?;
        wait_topic_id(&client, &brokers, &topic, Instant::now() + CLUSTER_ID_TIMEOUT)
    })
    .await
    .map_err(|e| Error::Config(format!("reading the topic's id: {e}")))?
}
