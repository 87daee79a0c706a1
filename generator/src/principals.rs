//! Who calls the platform API: internal users, external users and service
//! accounts, their teams and domains, and the principal directory.

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;
use sluice_schema::directory::{PrincipalDirectory, Team};

use super::rng;

pub const TEAMS: &[(&str, &str)] = &[
    ("data-platform", "data"),
    ("data-eng", "data"),
    ("analytics-eng", "analytics"),
    ("bi-reporting", "analytics"),
    ("ml-research", "ml"),
    ("ml-platform", "ml"),
    ("finance-ops", "finance"),
    ("growth", "marketing"),
    ("platform-sre", "platform"),
    ("security", "platform"),
    ("customer-success", "support"),
    ("partner-integrations", "partners"),
];

const FIRST: &[&str] = &[
    "abhishek", "alice", "bob", "carla", "dana", "emre", "farah", "gus", "hana", "ivan", "jun",
    "kemal", "lena", "mateo", "nadia", "omar", "priya", "quinn", "rosa", "sven", "tariq", "uma",
    "vera", "wei", "xena", "yusuf", "zoe", "arda", "bea", "chen",
];
const LAST: &[&str] = &[
    "chen", "kumar", "ortiz", "novak", "smith", "yilmaz", "haddad", "rossi", "tanaka", "muller",
    "silva", "nguyen", "kaya", "larsen", "ibrahim", "costa", "park", "dubois", "ali", "moreau",
];
const SERVICE_ACCOUNTS: &[(&str, &str)] = &[
    ("svc-airflow-scheduler", "data-eng"),
    ("svc-spark-operator", "data-platform"),
    ("svc-dbt-runner", "analytics-eng"),
    ("svc-metrics-exporter", "platform-sre"),
    ("svc-catalog-sync", "data-platform"),
    ("svc-backup", "platform-sre"),
    ("svc-feature-store", "ml-platform"),
    ("svc-report-builder", "bi-reporting"),
    ("svc-billing-export", "finance-ops"),
    ("svc-audit-shipper", "security"),
    ("svc-model-serving", "ml-research"),
    ("svc-crm-sync", "customer-success"),
];
const PARTNERS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InternalUser,
    ExternalUser,
    ServiceAccount,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub id: String,
    pub kind: Kind,
    /// Index into [`TEAMS`]; `None` when the directory does not know them.
    pub team: Option<usize>,
    /// The caller's usual IP address.
    pub ip: String,
    pub user_agent: &'static str,
    /// Index of the endpoint a service account mostly calls.
    pub favourite_endpoint: usize,
}

pub const INTERNAL_USERS: usize = 300;
pub const EXTERNAL_USERS: usize = 60;

/// All principals, in popularity order (rank 0 is the busiest).
pub fn build(seed: u64, endpoints: usize) -> Vec<Principal> {
    let mut r = rng::stream(seed, "principals", 0);
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    while names.len() < INTERNAL_USERS {
        let n = format!(
            "{}.{}",
            FIRST[r.random_range(0..FIRST.len())],
            LAST[r.random_range(0..LAST.len())]
        );
        let n = if names.contains(&n) {
            format!("{n}{}", r.random_range(2..99))
        } else {
            n
        };
        names.insert(n);
    }
    let mut names: Vec<String> = names.into_iter().collect();
    names.shuffle(&mut r);
    for name in names {
        // A few recent joiners are not in the directory yet.
        let team = (!r.random_ratio(1, 20)).then(|| r.random_range(0..TEAMS.len()));
        out.push(Principal {
            id: name,
            kind: Kind::InternalUser,
            team,
            ip: format!("10.20.{}.{}", r.random_range(0..64), r.random_range(2..255)),
            user_agent: if r.random_bool(0.5) {
                "iomete-cli/2.3.1"
            } else {
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"
            },
            favourite_endpoint: r.random_range(0..endpoints),
        });
    }
    for i in 0..EXTERNAL_USERS {
        let partner = PARTNERS[i % PARTNERS.len()];
        let prefix = ["203.0.113", "198.51.100", "192.0.2"][i % 3];
        out.push(Principal {
            id: format!("{partner}-integration-{:02}", i / PARTNERS.len() + 1),
            kind: Kind::ExternalUser,
            team: None,
            ip: format!("{prefix}.{}", r.random_range(2..255)),
            user_agent: "python-requests/2.32.3",
            favourite_endpoint: r.random_range(0..endpoints),
        });
    }
    for (name, team) in SERVICE_ACCOUNTS {
        out.push(Principal {
            id: name.to_string(),
            kind: Kind::ServiceAccount,
            team: TEAMS.iter().position(|(t, _)| t == team),
            ip: format!("10.0.{}.{}", r.random_range(0..16), r.random_range(2..255)),
            user_agent: "go-http-client/2.0",
            favourite_endpoint: r.random_range(0..endpoints),
        });
    }
    // Popularity: service accounts and partners mixed in among humans.
    out.shuffle(&mut r);
    out
}

/// The directory file the writer enriches from.
pub fn directory(principals: &[Principal]) -> PrincipalDirectory {
    let teams = TEAMS
        .iter()
        .map(|(t, d)| {
            (
                t.to_string(),
                Team {
                    domain: d.to_string(),
                },
            )
        })
        .collect();
    let mut users = BTreeMap::new();
    let mut service_accounts = BTreeMap::new();
    for p in principals {
        let Some(team) = p.team else { continue };
        let team = TEAMS[team].0.to_string();
        match p.kind {
            Kind::ServiceAccount => service_accounts.insert(p.id.clone(), team),
            _ => users.insert(p.id.clone(), team),
        };
    }
    PrincipalDirectory {
        teams,
        users,
        service_accounts,
    }
}
