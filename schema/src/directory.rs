//! The principal directory: who a principal is, for enrichment.
//!
//! YAML form (what `sluice gen` writes, `directory.yaml`):
//!
//! ```yaml
//! teams:
//!   data-platform: { domain: data }
//! users:
//!   alice.chen: data-platform
//! service_accounts:
//!   svc-airflow: data-platform
//! ```
//!
//! CSV form: a header `principal,kind,team,domain` where kind is `user` or
//! `service_account`; `domain` may be empty when the team's domain is given on
//! another row.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A team and the business domain it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub domain: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalDirectory {
    #[serde(default)]
    pub teams: BTreeMap<String, Team>,
    /// user id → team name
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// service account name → owning team name
    #[serde(default)]
    pub service_accounts: BTreeMap<String, String>,
}

/// What the directory says of one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal<'a> {
    pub team: &'a str,
    pub domain: Option<&'a str>,
    pub service_account: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("principal directory is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("principal directory CSV line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("principal directory: {principal} names team {team:?}, which is not in `teams`")]
    UnknownTeam { principal: String, team: String },
}

impl PrincipalDirectory {
    pub fn from_yaml(text: &str) -> Result<Self, DirectoryError> {
        let dir: Self = serde_yaml_ng::from_str(text)?;
        dir.check()?;
        Ok(dir)
    }

    pub fn to_yaml(&self) -> Result<String, DirectoryError> {
        Ok(serde_yaml_ng::to_string(self)?)
    }

    /// Parses the CSV form (`principal,kind,team,domain`).
    pub fn from_csv(text: &str) -> Result<Self, DirectoryError> {
        let mut dir = Self::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (i == 0 && line.starts_with("principal"))
            {
                continue;
            }
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [principal, kind, team, domain] = cols[..] else {
                return Err(DirectoryError::Csv {
                    line: line_no,
                    reason: format!("expected 4 columns, got {}", cols.len()),
                });
            };
            if principal.is_empty() || team.is_empty() {
                return Err(DirectoryError::Csv {
                    line: line_no,
                    reason: "principal and team must not be empty".into(),
                });
            }
            if !domain.is_empty() {
                dir.teams.insert(
                    team.to_string(),
                    Team {
                        domain: domain.to_string(),
                    },
                );
            }
            let target = match kind {
                "user" => &mut dir.users,
                "service_account" => &mut dir.service_accounts,
                other => {
                    return Err(DirectoryError::Csv {
                        line: line_no,
                        reason: format!("kind must be user or service_account, got {other:?}"),
                    });
                }
            };
            target.insert(principal.to_string(), team.to_string());
        }
        dir.check()?;
        Ok(dir)
    }

    fn check(&self) -> Result<(), DirectoryError> {
        for (principal, team) in self.users.iter().chain(&self.service_accounts) {
            if !self.teams.contains_key(team) {
                return Err(DirectoryError::UnknownTeam {
                    principal: principal.clone(),
                    team: team.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn lookup(&self, principal: &str) -> Option<Principal<'_>> {
        let (team, service_account) = match self.service_accounts.get(principal) {
            Some(team) => (team, true),
            None => (self.users.get(principal)?, false),
        };
        Some(Principal {
            team,
            domain: self.teams.get(team).map(|t| t.domain.as_str()),
            service_account,
        })
    }
}

/// A directory prepared for the writer's hot path: one hash probe per
/// principal instead of ordered-map walks.
#[derive(Debug, Clone, Default)]
pub struct DirectoryIndex {
    /// principal → (index into `teams`, is a service account)
    principals: HashMap<String, (usize, bool)>,
    /// (team, its domain)
    teams: Vec<(String, Option<String>)>,
}

impl DirectoryIndex {
    pub fn new(directory: &PrincipalDirectory) -> Self {
        let mut team_index: HashMap<&str, usize> = HashMap::new();
        let mut teams = Vec::new();
        let mut principals = HashMap::new();
        // Service accounts win over a user of the same name, as in `lookup`.
        let entries = directory
            .service_accounts
            .iter()
            .map(|(p, t)| (p, t, true))
            .chain(directory.users.iter().map(|(p, t)| (p, t, false)));
        for (principal, team, service_account) in entries {
            let t = *team_index.entry(team.as_str()).or_insert_with(|| {
                teams.push((
                    team.clone(),
                    directory.teams.get(team).map(|t| t.domain.clone()),
                ));
                teams.len() - 1
            });
            principals
                .entry(principal.clone())
                .or_insert((t, service_account));
        }
        Self { principals, teams }
    }

    /// The same answer as [`PrincipalDirectory::lookup`].
    pub fn lookup(&self, principal: &str) -> Option<Principal<'_>> {
        let &(t, service_account) = self.principals.get(principal)?;
        let (team, domain) = self.teams.get(t)?;
        Some(Principal {
            team,
            domain: domain.as_deref(),
            service_account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_answers_like_the_directory() {
        let d = PrincipalDirectory::from_csv(
            "principal,kind,team,domain\nalice,user,data,analytics\nsvc,service_account,sre,platform\nboth,user,data,\nboth,service_account,sre,\n",
        )
        .unwrap();
        let index = DirectoryIndex::new(&d);
        for p in ["alice", "svc", "both", "nobody"] {
            assert_eq!(index.lookup(p), d.lookup(p), "{p}");
        }
        assert!(index.lookup("both").unwrap().service_account);
    }

    #[test]
    fn yaml_and_csv_agree() {
        let yaml = "teams:\n  data-platform: { domain: data }\nusers:\n  alice.chen: data-platform\nservice_accounts:\n  svc-airflow: data-platform\n";
        let csv = "principal,kind,team,domain\nalice.chen,user,data-platform,data\nsvc-airflow,service_account,data-platform,\n";
        let a = PrincipalDirectory::from_yaml(yaml).unwrap();
        let b = PrincipalDirectory::from_csv(csv).unwrap();
        assert_eq!(a, b);
        let p = a.lookup("svc-airflow").unwrap();
        assert_eq!(
            (p.team, p.domain, p.service_account),
            ("data-platform", Some("data"), true)
        );
        assert!(a.lookup("mallory").is_none());
        let round = PrincipalDirectory::from_yaml(&a.to_yaml().unwrap()).unwrap();
        assert_eq!(round, a);
    }

    #[test]
    fn unknown_team_and_bad_csv_are_errors() {
        let err = PrincipalDirectory::from_yaml("users:\n  bob: ghosts\n").unwrap_err();
        assert!(err.to_string().contains("ghosts"));
        let err = PrincipalDirectory::from_csv("bob,robot,t,d\n").unwrap_err();
        assert!(err.to_string().contains("line 1"));
    }
}
