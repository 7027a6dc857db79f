//! `vitalflow simulate`: the simulator's readings produced to the vitals topic in its format (the seed's JSON by default).

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::simulate::VitalsSimulator;

use crate::client::{client_config, kafka_err};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// How many records to produce and how fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProduceSpec {
    /// Stop after this many records; `None` runs until shutdown.
    pub count: Option<u64>,
    /// Records per second across all patients; 0 produces as fast as the broker takes them.
    pub rate_per_sec: f64,
}

/// Unacknowledged records allowed in flight before waiting for delivery reports.
const IN_FLIGHT: usize = 2_000;

/// Produces simulated readings keyed by patient id (one patient's readings stay in order on one
/// partition) with an idempotent producer; returns how many were acknowledged.
pub async fn produce_simulated(
    kafka: &KafkaConfig,
    simulator: &mut VitalsSimulator,
    spec: ProduceSpec,
    shutdown: CancellationToken,
) -> Result<u64> {
    kafka.validate()?;
    let producer: FutureProducer = client_config(kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(kafka_err("create producer"))?;
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut acked: u64 = 0;
    let mut in_flight = Vec::with_capacity(IN_FLIGHT);
    while spec.count.is_none_or(|c| sent < c) && !shutdown.is_cancelled() {
        if spec.rate_per_sec > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / spec.rate_per_sec);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let (key, payload) = simulator.next_payload(chrono::Utc::now());
        let record = FutureRecord::to(&kafka.topic).key(&key).payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => in_flight.push(delivery),
            Err((error, _)) => return Err(Error::Kafka { op: "produce", source: error }),
        }
        sent += 1;
        // Paced runs wait for each record, so that a reading reaches Kafka when it is made.
        if in_flight.len() >= IN_FLIGHT || spec.rate_per_sec > 0.0 {
            acked += await_deliveries(&mut in_flight).await?;
        }
    }
    acked += await_deliveries(&mut in_flight).await?;
    tracing::info!(records = acked, "Simulator done.");
    Ok(acked)
}

async fn await_deliveries(in_flight: &mut Vec<rdkafka::producer::DeliveryFuture>) -> Result<u64> {
    let mut acked = 0;
    for delivery in in_flight.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => acked += 1,
            Ok(Err((error, _))) => return Err(Error::Kafka { op: "produce", source: error }),
            Err(_) => return Err(Error::Config("producer dropped a delivery report".into())),
        }
    }
    Ok(acked)
}
