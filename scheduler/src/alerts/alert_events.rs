//! Delivery of the alerts' lifecycle: each row of `alert_events` (a raise, an acknowledgement, an
//! escalation, a dismissal, a resolve) sent to the Kafka topic and the webhook as an `alert_event`
//! message, so that a paging system can follow an alert to its end.
//!
//! As for `risk_alerts`: only committed events (the keeper's commits to `alert_events`), at least once
//! (the sink records in `_checkpoints/alerts-<sink>-events.json` the `alert_events` version it has had
//! acknowledged, and sends a commit again after a crash before that), with the stable `event_id`
//! (`<alert_id>#<n>`) to drop repeats by; a sink that never ran starts with the next commit.
//! Kafka: key the patient id, headers `alert_id`, `event_id` and `type: alert_event`.

use std::sync::Arc;

use vitalflow_udf_model::lake::checkpoint::{DeliveryCheckpoint, load_delivery_checkpoint, save_delivery_checkpoint};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{ALERT_EVENTS_SCHEMA, table};

use super::{AlertDeliveryStats, Deliver, Outgoing, Sink, SinkStats};
use crate::error::Result;
use crate::table_rows::read_table_file;
use crate::ward_alerts::AlertEvent;
use crate::ward_alerts::rows::events_of;

/// Name of the Kafka topic's event delivery in logs, metrics and its checkpoint.
pub(super) const KAFKA_NAME: &str = "kafka-events";
/// Name of the webhook's event delivery.
pub(super) const WEBHOOK_NAME: &str = "webhook-events";
/// Most `alert_events` commits read in one go.
const MAX_COMMITS: usize = 1_000;

fn outgoing(event: &AlertEvent) -> Outgoing {
    Outgoing {
        key: event.patient_id.clone(),
        headers: vec![
            ("alert_id", event.alert_id.clone()),
            ("event_id", event.event_id()),
            ("type", "alert_event".to_string()),
        ],
        body: event.message(),
    }
}

/// One sink's delivery of `alert_events`.
pub(super) struct EventDelivery {
    sink: Sink,
    location: DataLocation,
    stats: Arc<AlertDeliveryStats>,
    /// The last `event_seq` acknowledged (`last_batch_id`) and the `alert_events` version read up to
    /// (`alerts_version`); `None` until the checkpoint is loaded.
    delivered: Option<DeliveryCheckpoint>,
    /// `alert_events`, once it exists.
    events: Option<LakeTable>,
}

impl EventDelivery {
    pub(super) fn new(sink: Sink, location: &DataLocation, stats: Arc<AlertDeliveryStats>) -> EventDelivery {
        EventDelivery { sink, location: location.clone(), stats, delivered: None, events: None }
    }

    async fn record(&mut self, checkpoint: DeliveryCheckpoint, sent: usize) -> Result<()> {
        save_delivery_checkpoint(&self.location, self.name(), checkpoint).await?;
        self.delivered = Some(checkpoint);
        let stats = self.stats();
        stats.delivered.fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        stats.last_batch_id.store(checkpoint.last_batch_id.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl Deliver for EventDelivery {
    fn name(&self) -> &'static str {
        match self.sink {
            Sink::Kafka(_) => KAFKA_NAME,
            Sink::Webhook(_) => WEBHOOK_NAME,
        }
    }

    fn stats(&self) -> &SinkStats {
        match self.sink {
            Sink::Kafka(_) => &self.stats.kafka_events,
            Sink::Webhook(_) => &self.stats.webhook_events,
        }
    }

    fn delivered_through(&self) -> i64 {
        self.delivered.map_or(0, |d| d.last_batch_id)
    }

    async fn deliver_pending(&mut self) -> Result<bool> {
        match &mut self.events {
            Some(events) => events.refresh().await?,
            None => self.events = LakeTable::open(&self.location, table::ALERT_EVENTS, None).await?,
        }
        let Some(events) = &self.events else { return Ok(false) };
        let latest = events.version();
        let delivered = match self.delivered {
            Some(delivered) => delivered,
            None => match load_delivery_checkpoint(&self.location, self.name()).await? {
                Some(checkpoint) => {
                    self.delivered = Some(checkpoint);
                    checkpoint
                }
                None => {
                    // A new sink starts now: nobody is paged with last month's events.
                    let start = DeliveryCheckpoint { last_batch_id: 0, alerts_version: latest };
                    self.record(start, 0).await?;
                    return Ok(false);
                }
            },
        };
        if latest <= delivered.alerts_version {
            return Ok(false);
        }
        let added = events.added_since(delivered.alerts_version, MAX_COMMITS).await?;
        let read_up_to = (delivered.alerts_version + MAX_COMMITS as i64).min(latest);
        let mut sent = false;
        let mut last_seq = delivered.last_batch_id;
        for (version, file) in added {
            let path = self.location.path(&format!("{}/{}", table::ALERT_EVENTS, file.path));
            let mut messages = Vec::new();
            for batch in read_table_file(&self.location, &path, &ALERT_EVENTS_SCHEMA).await? {
                for event in events_of(&batch)? {
                    last_seq = last_seq.max(event.event_seq);
                    messages.push(outgoing(&event));
                }
            }
            self.sink.send(&messages).await?;
            self.record(DeliveryCheckpoint { last_batch_id: last_seq, alerts_version: version }, messages.len())
                .await?;
            sent = true;
        }
        // Commits without events (how far the keeper read risk_alerts) are read past.
        if self.delivered.is_some_and(|d| d.alerts_version < read_up_to) {
            self.record(DeliveryCheckpoint { last_batch_id: last_seq, alerts_version: read_up_to }, 0).await?;
        }
        Ok(sent)
    }
}
