//! The id the brokers gave the vitals topic. Kafka (2.8 and later) names every topic by a UUID besides
//! its name; a topic deleted and created again under the same name gets a new id and starts its offsets
//! from 0 again. Landing positions are kept per topic id, so the new topic's records are never taken
//! for ones already landed from the old one.
//!
//! rust-rdkafka has no wrapper for librdkafka's DescribeTopics admin call, so this module makes it
//! through the C API. Every handle it creates is owned by an [`Owned`] and released on every path.

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaRespErr;

/// What the brokers say about the topic's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicId {
    /// The topic exists and has this id (32 hex digits).
    Known(String),
    /// The topic does not exist (yet).
    Absent,
    /// The brokers do not give topic ids (older Kafka, brokers that report the zero UUID).
    Unsupported,
}

/// A librdkafka handle, destroyed when dropped.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the librdkafka constructor paired with this destructor,
            // and nothing else destroys it.
            unsafe { (self.1)(self.0) }
        }
    }
}

/// A librdkafka string as text (empty for NULL).
fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long as the object they came from,
    // which outlives this call.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// Error codes of brokers or a client that cannot describe topics by id.
fn unsupported(code: RDKafkaRespErr) -> bool {
    matches!(
        code,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE | RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION
    )
}

/// Asks the brokers for `topic`'s id through `client`. An `Err` is a failure worth retrying (no answer
/// in `timeout`, a broker error), with its reason.
pub fn describe_topic_id<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicId, String> {
    let name = CString::new(topic).map_err(|_| format!("the topic name {topic:?} holds a NUL byte"))?;
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client for the whole call; every pointer passed below is either one
    // librdkafka just returned (checked for NULL where it may be NULL) or `name`, which outlives the
    // request (librdkafka copies the names into the collection).
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = Owned(
            rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            rd::rd_kafka_TopicCollection_destroy,
        );
        let options = Owned(
            rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS),
            rd::rd_kafka_AdminOptions_destroy,
        );
        let queue = Owned(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
        if topics.0.is_null() || options.0.is_null() || queue.0.is_null() {
            return Err("librdkafka could not prepare a DescribeTopics request".into());
        }
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(options.0, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        rd::rd_kafka_DescribeTopics(rk, topics.0, options.0, queue.0);
        let event =
            Owned(rd::rd_kafka_queue_poll(queue.0, timeout_ms.saturating_add(1000)), rd::rd_kafka_event_destroy);
        if event.0.is_null() {
            return Err(format!("no answer to DescribeTopics within {} ms", timeout.as_millis()));
        }
        let code = rd::rd_kafka_event_error(event.0);
        if unsupported(code) {
            return Ok(TopicId::Unsupported);
        }
        if code != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("DescribeTopics failed: {}", text(rd::rd_kafka_event_error_string(event.0))));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
        if result.is_null() {
            return Err("DescribeTopics answered with another kind of event".into());
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        if descriptions.is_null() || count == 0 {
            return Err("DescribeTopics answered without the topic".into());
        }
        let description = *descriptions;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null() {
            let code = rd::rd_kafka_error_code(error);
            return match code {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => Ok(TopicId::Absent),
                code if unsupported(code) => Ok(TopicId::Unsupported),
                _ => Err(format!("describing topic {topic:?}: {}", text(rd::rd_kafka_error_string(error)))),
            };
        }
        let uuid = rd::rd_kafka_TopicDescription_topic_id(description);
        if uuid.is_null() {
            return Ok(TopicId::Unsupported);
        }
        let (high, low) = (
            rd::rd_kafka_Uuid_most_significant_bits(uuid) as u64,
            rd::rd_kafka_Uuid_least_significant_bits(uuid) as u64,
        );
        Ok(if high == 0 && low == 0 { TopicId::Unsupported } else { TopicId::Known(format!("{high:016x}{low:016x}")) })
    }
}
