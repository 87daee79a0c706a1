//! Internal or external caller: a service account, or a client address in
//! the configured internal networks, is `internal`; any other client address
//! is `external`; with neither an address nor a service account the caller
//! is `unknown`.

use std::net::IpAddr;

use ipnet::IpNet;

/// Private and loopback ranges: what "internal" means when nothing is configured.
pub const DEFAULT_INTERNAL_NETWORKS: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
];

#[derive(Debug, Clone)]
pub struct CallerClassifier {
    internal: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
#[error("internal network {0:?} is not a CIDR (e.g. 10.0.0.0/8)")]
pub struct BadNetwork(String);

impl CallerClassifier {
    pub fn new<S: AsRef<str>>(networks: &[S]) -> Result<Self, BadNetwork> {
        let internal = networks
            .iter()
            .map(|n| {
                n.as_ref()
                    .parse()
                    .map_err(|_| BadNetwork(n.as_ref().to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { internal })
    }

    pub fn classify(&self, client_ip: Option<&str>, service_account: bool) -> &'static str {
        self.classify_addr(
            client_ip.and_then(|ip| ip.parse::<IpAddr>().ok()),
            service_account,
        )
    }

    /// [`Self::classify`] of an address parsed already.
    pub fn classify_addr(&self, client_ip: Option<IpAddr>, service_account: bool) -> &'static str {
        if service_account {
            return "internal";
        }
        match client_ip {
            Some(ip) if self.internal.iter().any(|n| n.contains(&ip)) => "internal",
            Some(_) => "external",
            None => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let c = CallerClassifier::new(&DEFAULT_INTERNAL_NETWORKS).unwrap();
        assert_eq!(c.classify(Some("10.20.3.4"), false), "internal");
        assert_eq!(c.classify(Some("203.0.113.9"), false), "external");
        assert_eq!(c.classify(Some("203.0.113.9"), true), "internal");
        assert_eq!(c.classify(None, true), "internal");
        assert_eq!(c.classify(None, false), "unknown");
        assert_eq!(c.classify(Some("::1"), false), "internal");
        assert!(CallerClassifier::new(&["10.0.0.0/33"]).is_err());
    }
}
