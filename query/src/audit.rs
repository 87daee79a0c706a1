//! The audit log: privileged access (an admin's requests, a platform
//! caller reading across tenants or as one) and every refused request, one
//! JSON object per line, in a file of its own (`[query] audit_log`) and as
//! `tracing` events of target `sluice::audit`.
//!
//! The file is bounded: past `max_bytes` it is renamed to `<file>.1`
//! (replacing the previous one) and a new one begun, so it never holds
//! more than twice that. A write that fails is logged and does not fail
//! the request: the tracing event carries the same fields.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

use crate::config::Role;

/// One audited request.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// `refused`, `admin`, `all_tenants` or `as_tenant`.
    pub event: &'static str,
    /// The caller's name (a token's `name`, `token#<n>`, `jwt:<subject>`;
    /// `?` when unidentified).
    pub who: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// The refusal's HTTP status; 0 for an admitted request.
    #[serde(skip_serializing_if = "is_zero")]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

pub struct AuditLog {
    path: Option<PathBuf>,
    max_bytes: u64,
    file: Mutex<Option<std::fs::File>>,
}

impl AuditLog {
    /// Lines go to `path` (created with its directory), rotated past
    /// `max_bytes`; `None`: to the tracing events only.
    pub fn new(path: Option<PathBuf>, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes: max_bytes.max(4096),
            file: Mutex::new(None),
        }
    }

    pub fn write(&self, event: &AuditEvent<'_>) {
        tracing::info!(
            target: "sluice::audit",
            event = event.event,
            who = event.who,
            role = ?event.role,
            tenant = event.tenant,
            method = event.method,
            path = event.path,
            status = event.status,
            reason = event.reason,
            "audit"
        );
        let Some(path) = &self.path else {
            return;
        };
        let line = Line {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append(path, &mut file, &text) {
            *file = None;
            tracing::warn!(error = %e, path = %path.display(), "writing the audit log");
        }
    }

    fn append(
        &self,
        path: &PathBuf,
        file: &mut Option<std::fs::File>,
        text: &[u8],
    ) -> std::io::Result<()> {
        if file.is_none() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            );
        }
        let Some(f) = file.as_mut() else {
            return Ok(());
        };
        if f.metadata()?.len() + text.len() as u64 > self.max_bytes {
            let mut old = path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(path, &old)?;
            *f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
        }
        f.write_all(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let log = AuditLog::new(Some(path.clone()), 4096);
        for i in 0..200 {
            log.write(&AuditEvent {
                event: "refused",
                who: "token#1",
                role: Some(Role::Operator),
                tenant: Some("acme"),
                method: "GET",
                path: &format!("/loki/api/v1/labels?{i}"),
                status: 403,
                reason: Some("X-Scope-OrgID \"other\" is not this token's tenant"),
            });
        }
        let now = std::fs::read_to_string(&path).unwrap();
        let before = std::fs::read_to_string(dir.path().join("audit/audit.jsonl.1")).unwrap();
        assert!(now.len() <= 4096 && before.len() <= 4096);
        let last: serde_json::Value = serde_json::from_str(now.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], "refused");
        assert_eq!(last["role"], "operator");
        assert_eq!(last["tenant"], "acme");
        assert_eq!(last["status"], 403);
        assert_eq!(last["path"], "/loki/api/v1/labels?199");
        assert!(last["at"].as_str().unwrap().ends_with('Z'));
    }
}
