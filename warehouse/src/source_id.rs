//! What a table's positions are keyed by: one typed source id per thing a
//! writer reads from, printed and parsed in the one format the
//! `sluice.positions` snapshot property has always held (so tables written
//! before keep resuming):
//!
//! | source | key |
//! |---|---|
//! | a Kafka partition | `kafka:<topic>:<partition>` |
//! | an imported file | `file:<key>` |
//! | a `sluice up` write-ahead log | `wal:<name>` |
//! | a pod-log file under `sluice up` | `pod:<pod_uid>/<container>/<restart>/<fingerprint>@<generation>` |
//! | a process's own outbox (the alert evaluator's history) | `outbox:<name>` |
//! | any of those, of one `sluice up` instance | `<instance>/<source>` |

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    Kafka {
        topic: String,
        partition: i32,
    },
    File {
        key: String,
    },
    Wal {
        name: String,
    },
    /// `file` is the collector's file key (`ingest::collect::checkpoint::FileKey`).
    PodLog {
        file: String,
        generation: u32,
    },
    /// Rows a process keeps in its own saved state until the table holds
    /// them, numbered in order (the alert evaluator's transitions).
    Outbox {
        name: String,
    },
    /// A source of one `sluice up` instance (`ingest::embedded::instance`).
    Scoped {
        instance: String,
        source: Box<SourceId>,
    },
}

impl SourceId {
    pub fn kafka(topic: &str, partition: i32) -> Self {
        Self::Kafka {
            topic: topic.to_string(),
            partition,
        }
    }

    /// The source without its instance scope.
    pub fn unscoped(&self) -> &SourceId {
        match self {
            Self::Scoped { source, .. } => source.unscoped(),
            other => other,
        }
    }

    /// This source as `instance`'s.
    pub fn scoped(self, instance: &str) -> Self {
        Self::Scoped {
            instance: instance.to_string(),
            source: Box::new(self),
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kafka { topic, partition } => write!(f, "kafka:{topic}:{partition}"),
            Self::File { key } => write!(f, "file:{key}"),
            Self::Wal { name } => write!(f, "wal:{name}"),
            Self::Outbox { name } => write!(f, "outbox:{name}"),
            Self::PodLog { file, generation } => write!(f, "pod:{file}@{generation}"),
            Self::Scoped { instance, source } => write!(f, "{instance}/{source}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a source id: {0:?} (kafka:<topic>:<partition>, file:<key>, wal:<name>, outbox:<name>, pod:<file>@<generation>, or <instance>/ before one)"
)]
pub struct ParseSourceIdError(pub String);

impl FromStr for SourceId {
    type Err = ParseSourceIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSourceIdError(text.to_string());
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        // `<instance>/<source>`: a slash before the kind's colon.
        if let Some((instance, inner_kind)) = kind.split_once('/') {
            if instance.is_empty() {
                return Err(bad());
            }
            let inner: SourceId = text[instance.len() + 1..].parse().map_err(|_| bad())?;
            debug_assert!(!inner_kind.is_empty());
            return Ok(inner.scoped(instance));
        }
        match kind {
            "kafka" => {
                let (topic, partition) = rest.rsplit_once(':').ok_or_else(bad)?;
                Ok(Self::Kafka {
                    topic: topic.to_string(),
                    partition: partition.parse().map_err(|_| bad())?,
                })
            }
            "file" => Ok(Self::File {
                key: rest.to_string(),
            }),
            "wal" if !rest.is_empty() => Ok(Self::Wal {
                name: rest.to_string(),
            }),
            "outbox" if !rest.is_empty() => Ok(Self::Outbox {
                name: rest.to_string(),
            }),
            "pod" => {
                let (file, generation) = rest.rsplit_once('@').ok_or_else(bad)?;
                Ok(Self::PodLog {
                    file: file.to_string(),
                    generation: generation.parse().map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_s_keys_round_trip() {
        for key in [
            "kafka:sluice.events:3",
            "file:2026/11/events-0001.ndjson.gz",
            "wal:events",
            "outbox:alerts/0191f3a2",
            "pod:6f1c-uid/app/2/00ab12cd@1",
            "3f9a2c1b7e4d/wal:lifecycle",
            "3f9a2c1b7e4d/pod:6f1c-uid/app/0/ff@0",
        ] {
            let id: SourceId = key.parse().unwrap();
            assert_eq!(id.to_string(), key);
        }
        assert_eq!(
            "3f9a2c1b7e4d/pod:u/c/1/f@7"
                .parse::<SourceId>()
                .unwrap()
                .unscoped(),
            &SourceId::PodLog {
                file: "u/c/1/f".into(),
                generation: 7
            }
        );
        assert_eq!(
            "kafka:t:9".parse::<SourceId>().unwrap(),
            SourceId::kafka("t", 9)
        );
        for bad in [
            "",
            "kafka:t",
            "kafka:t:x",
            "pod:u/c/1/f",
            "wal:",
            "outbox:",
            "nope:x",
            "/wal:x",
        ] {
            assert!(bad.parse::<SourceId>().is_err(), "{bad}");
        }
    }
}
