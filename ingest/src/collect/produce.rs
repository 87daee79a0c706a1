//! The producer the file tailer sends through: librdkafka with idempotence,
//! `acks=all` and an unbounded delivery timeout, so a broker outage only
//! pauses delivery. Each delivery report moves a file position forward in
//! [`Acks`]; a failed delivery is handed back to be sent again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

use super::acks::Acks;
use super::metrics::{CollectorMetrics, TopicLabel};
use crate::outlet::{Delivery, Failed, LogOutlet, SendError};

/// Producer settings shared by every collector producer.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub bootstrap: String,
    /// `lz4`, `zstd`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// Bytes librdkafka may hold unacknowledged; reading pauses beyond it.
    pub queue_bytes: usize,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`, …).
    pub extra: BTreeMap<String, String>,
}

impl ProducerSettings {
    /// The user's `[kafka.properties]` first, then the settings delivery
    /// rests on, so those always win (and [`crate::kafka_properties::check`]
    /// refuses them at load).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = crate::kafka_properties::client_config(&self.bootstrap, &self.extra);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &self.compression)
            // Throughput: up to 20 ms of lines share a request.
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set(
                "queue.buffering.max.kbytes",
                (self.queue_bytes / 1024).max(1024).to_string(),
            )
            // 0 = never give up: an outage pauses delivery instead of
            // dropping lines; the bounded queue pauses reading.
            .set("message.timeout.ms", "0");
        c
    }
}

pub struct DeliveryContext {
    acks: Arc<Acks>,
    metrics: CollectorMetrics,
    topic: TopicLabel,
    failed: Mutex<Vec<Failed>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        match result {
            Ok(_) => {
                self.acks.acked(delivery.lane, delivery.seq);
                self.metrics.lines_produced.inc_by(delivery.lines);
                self.metrics
                    .messages_produced
                    .get_or_create(&self.topic)
                    .inc();
            }
            Err((e, msg)) => {
                self.metrics.produce_errors.get_or_create(&self.topic).inc();
                tracing::warn!(error = %e, topic = %self.topic.topic, "delivery failed; sending again");
                let failed = Failed {
                    delivery,
                    key: msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
                    payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(failed);
            }
        }
    }
}

/// Sends pod log messages and tracks their delivery.
pub struct LogProducer {
    producer: ThreadedProducer<DeliveryContext>,
    topic: String,
}

impl LogProducer {
    pub fn new(
        settings: &ProducerSettings,
        topic: &str,
        acks: Arc<Acks>,
        metrics: CollectorMetrics,
    ) -> Result<Self, KafkaError> {
        let context = DeliveryContext {
            acks,
            metrics,
            topic: TopicLabel {
                topic: topic.to_string(),
            },
            failed: Mutex::new(Vec::new()),
        };
        let producer = settings.client_config().create_with_context(context)?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }
}

impl LogOutlet for LogProducer {
    fn send(
        &self,
        key: &[u8],
        payload: &[u8],
        delivery: Box<Delivery>,
    ) -> Result<(), (SendError, Box<Delivery>)> {
        let record = BaseRecord::with_opaque_to(&self.topic, delivery)
            .key(key)
            .payload(payload);
        self.producer.send(record).map_err(|(e, record)| {
            let kind = match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                other => SendError::Other(other.to_string()),
            };
            (kind, record.delivery_opaque)
        })
    }

    /// Failed deliveries handed back since the last call.
    fn take_failed(&self) -> Vec<Failed> {
        use rdkafka::producer::Producer;
        std::mem::take(
            &mut *self
                .producer
                .context()
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    fn flush(&self, timeout: std::time::Duration) -> Result<(), String> {
        use rdkafka::producer::Producer;
        self.producer.flush(timeout).map_err(|e| e.to_string())
    }
}
