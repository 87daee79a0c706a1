//! `[kafka.properties]`: extra librdkafka settings for every client (SASL,
//! TLS, client ids, tuning). The settings sluice's delivery guarantees rest
//! on are sluice's own: a user value for them is refused at configuration
//! load ([`check`]), and every client applies the user's properties first
//! and its own settings after ([`client_config`]), so even an unchecked
//! value cannot weaken delivery.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Properties sluice sets itself, and why.
pub const RESERVED: &[(&str, &str)] = &[
    (
        "acks",
        "the collector produces with acks=all, so a line the broker acknowledged is on every in-sync replica",
    ),
    (
        "request.required.acks",
        "the collector produces with acks=all (this is acks' alias)",
    ),
    (
        "enable.idempotence",
        "the collector's producer is idempotent, so retries never duplicate or reorder lines",
    ),
    (
        "message.timeout.ms",
        "the collector never gives up on a message (0): an outage pauses delivery instead of dropping lines",
    ),
    (
        "delivery.timeout.ms",
        "the collector never gives up on a message (this is message.timeout.ms' alias)",
    ),
    (
        "enable.auto.commit",
        "the writer commits its offsets only with the table commit that holds their rows",
    ),
    ("bootstrap.servers", "set [kafka] bootstrap (or --kafka)"),
    ("group.id", "set [kafka] group_id"),
];

/// Refuses user properties that would override a reserved setting.
pub fn check(properties: &BTreeMap<String, String>) -> Result<(), String> {
    let refused: Vec<String> = properties
        .keys()
        .filter_map(|k| {
            let key = k.trim().to_ascii_lowercase();
            RESERVED
                .iter()
                .find(|(r, _)| *r == key)
                .map(|(r, why)| format!("{r}: {why}"))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "[kafka.properties] may not set what sluice's delivery guarantees rest on; remove {}",
            refused.join("; ")
        ))
    }
}

/// A client configuration: the user's `extra` properties, then the
/// bootstrap servers. The caller sets its own settings after, so they win.
pub fn client_config(bootstrap: &str, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in extra {
        config.set(k, v);
    }
    config.set("bootstrap.servers", bootstrap);
    config
}

/// A consumer's configuration: [`client_config`] plus the consumer tuning
/// sluice measured, each unless `extra` sets it.
pub fn consumer_config(bootstrap: &str, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = client_config(bootstrap, extra);
    // Once its local queue passes queued.min.messages (100 000), librdkafka
    // postpones a partition's next fetch by this much (default 1 s). A
    // consumer that drains the queue in well under that then sits idle:
    // with 1 s, the broker benchmark's machine was idle half the time and
    // the writer ran at 0.65x the import path.
    if !extra.contains_key("fetch.queue.backoff.ms") {
        config.set("fetch.queue.backoff.ms", "20");
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_keys_are_refused_with_the_reason() {
        let props: BTreeMap<String, String> = [
            ("acks".to_string(), "0".to_string()),
            ("sasl.username".to_string(), "u".to_string()),
        ]
        .into();
        let err = check(&props).unwrap_err();
        assert!(
            err.contains("acks: the collector produces with acks=all"),
            "{err}"
        );
        assert!(!err.contains("sasl"), "{err}");
        let ok: BTreeMap<String, String> =
            [("ssl.ca.location".to_string(), "/ca".to_string())].into();
        assert!(check(&ok).is_ok());
        let upper: BTreeMap<String, String> = [("ACKS".to_string(), "1".to_string())].into();
        assert!(check(&upper).is_err());
    }
}
