//! Who calls the API, and what they may see.
//!
//! A caller presents a static bearer token (`[[query.tokens]]`, with a
//! role and optionally a tenant) or an OIDC JWT (`[query.jwt]`, role and
//! tenant from claims). A caller with a tenant reads that tenant's rows
//! only: the tenant travels in the query's scope
//! ([`crate::isolation::QueryScope::tenant`]) to every SQL session, log
//! search and LogQL selector the request runs ([`crate::tenancy`]). A
//! caller without one (an operator or admin of the platform) sees
//! everything, and may narrow itself to one tenant with `X-Scope-OrgID`,
//! as Grafana's Loki data source sends it; a tenant's caller may send only
//! its own.
//!
//! Tokens and tenants are reloaded without a restart
//! ([`AccessControl::replace`]). Privileged access (admins, callers who
//! read across tenants) and every refusal go to the audit log
//! ([`crate::audit`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sluice_http::jwt::{JwtConfig, JwtVerifier};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::audit::{AuditEvent, AuditLog};
use crate::config::{Role, Token};
use crate::error::QueryError;
use crate::tenancy::{TenantConfig, TenantView, Tenants};

/// Loki's tenant header.
pub const SCOPE_HEADER: &str = "X-Scope-OrgID";

/// Who asks (set by [`authorize`]): the key of admission's per-caller
/// limits, the role whose tables and routes it gets, and the tenant whose
/// rows it reads.
#[derive(Clone)]
pub struct Caller {
    pub key: String,
    /// How the audit log names the caller: a token's `name` (or its place
    /// in the configuration), a JWT's subject. Never the secret.
    pub who: String,
    pub role: Role,
    pub tenant: Option<Arc<TenantView>>,
}

/// One version of the access configuration.
pub struct Access {
    tokens: Vec<Token>,
    tenants: Tenants,
    jwt: Option<Arc<JwtVerifier>>,
    /// Each tenant's queries at once (`max_concurrent`, or the default).
    slots: HashMap<String, TenantSlots>,
    /// How long a tenant's request waits for one of its slots, and how
    /// many may wait (`[query] queue_timeout_secs`, `max_queued`).
    wait: std::time::Duration,
    max_waiting: usize,
    /// Tenants whose metrics carry their name; the rest count as `other`.
    labelled: std::collections::BTreeSet<String>,
}

/// What [`Access::build`] needs.
pub struct AccessSettings {
    pub tokens: Vec<Token>,
    pub tenants: Vec<TenantConfig>,
    pub jwt: Option<JwtConfig>,
    pub per_tenant_max_concurrent: usize,
    pub tenant_metric_labels: usize,
    /// A tenant's request waits this long for one of its slots (429 after).
    pub queue_timeout: std::time::Duration,
    /// At most this many of a tenant's requests wait (429 past it).
    pub max_queued: usize,
}

/// One tenant's query slots and who waits for them.
struct TenantSlots {
    n: usize,
    sem: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl Access {
    /// Checks the tenants and that every token's tenant exists, and loads
    /// the JWKS when JWTs are configured.
    pub async fn build(settings: AccessSettings) -> Result<Self, String> {
        let tenants = crate::tenancy::check(&settings.tenants, &settings.tokens)?;
        let jwt = match settings.jwt {
            Some(c) => {
                c.validate().map_err(|e| format!("[query.jwt]: {e}"))?;
                Some(Arc::new(
                    JwtVerifier::new(c)
                        .await
                        .map_err(|e| format!("[query.jwt]: {e}"))?,
                ))
            }
            None => None,
        };
        let slots = settings
            .tenants
            .iter()
            .map(|t| {
                let n = t
                    .max_concurrent
                    .unwrap_or(settings.per_tenant_max_concurrent)
                    .max(1);
                (
                    t.name.clone(),
                    TenantSlots {
                        n,
                        sem: Arc::new(Semaphore::new(n)),
                        waiting: Arc::default(),
                    },
                )
            })
            .collect();
        let labelled = tenants.labelled(settings.tenant_metric_labels);
        Ok(Self {
            tokens: settings.tokens,
            tenants,
            jwt,
            slots,
            wait: settings.queue_timeout,
            max_waiting: settings.max_queued,
            labelled,
        })
    }

    /// No tokens and no JWTs: the API is open (loopback only).
    fn open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    fn metric_label(&self, tenant: &str) -> String {
        if self.labelled.contains(tenant) {
            tenant.to_string()
        } else {
            "other".to_string()
        }
    }

    /// The caller `request` authenticates as (`Ok(None)`: an open API).
    async fn identify(&self, headers: &HeaderMap) -> Result<Option<Caller>, QueryError> {
        if self.open() {
            return Ok(None);
        }
        if let Some(i) = sluice_http::auth::find_index(headers, &self.tokens, |t| &t.token) {
            let t = &self.tokens[i];
            let tenant = match &t.tenant {
                Some(name) => Some(self.tenant(name)?),
                None => None,
            };
            return Ok(Some(Caller {
                key: t.token.clone(),
                who: t.name.clone().unwrap_or_else(|| format!("token#{}", i + 1)),
                role: t.role,
                tenant,
            }));
        }
        let presented = sluice_http::auth::bearer(headers);
        match (&self.jwt, presented) {
            (Some(jwt), Some(token)) if JwtVerifier::looks_like_jwt(token) => {
                let claims = jwt
                    .verify(token)
                    .await
                    .map_err(|e| QueryError::Unauthorized(format!("bearer token refused: {e}")))?;
                let role = claims
                    .role
                    .as_deref()
                    .and_then(|r| serde_json::from_value::<Role>(r.into()).ok())
                    .ok_or_else(|| {
                        QueryError::Denied(
                            "the token names no role sluice knows (analyst, operator or admin)"
                                .to_string(),
                        )
                    })?;
                let tenant = match &claims.tenant {
                    Some(name) => Some(self.tenant(name)?),
                    None => None,
                };
                // Admission's key: bounded by roles and tenants, not by
                // how many subjects a provider has.
                let key = format!(
                    "jwt:{}:{}",
                    serde_json::to_value(role)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    tenant.as_ref().map_or("", |t| t.name.as_str())
                );
                Ok(Some(Caller {
                    key,
                    who: format!("jwt:{}", claims.subject.as_deref().unwrap_or("?")),
                    role,
                    tenant,
                }))
            }
            _ => Err(QueryError::Unauthorized(
                "missing or unknown bearer token".to_string(),
            )),
        }
    }

    fn tenant(&self, name: &str) -> Result<Arc<TenantView>, QueryError> {
        self.tenants
            .get(name)
            .cloned()
            .ok_or_else(|| QueryError::Denied(format!("tenant {name:?} is not configured here")))
    }

    /// One of the tenant's query slots: at once when free, else after
    /// waiting (as admission waits for a global slot); a 429 naming the
    /// limit when the wait is over or too many of the tenant's requests
    /// wait already. A page of the console asks several things at once.
    async fn slot(&self, tenant: &str) -> Result<Option<OwnedSemaphorePermit>, QueryError> {
        use std::sync::atomic::Ordering;
        let Some(slots) = self.slots.get(tenant) else {
            return Ok(None);
        };
        if let Ok(p) = slots.sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let busy = |why: String| {
            QueryError::Busy(format!(
                "tenant {tenant} already runs {} queries at once (its max_concurrent), {why}",
                slots.n
            ))
        };
        if slots.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            slots.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(format!("and {} more wait", self.max_waiting)));
        }
        let got = tokio::time::timeout(self.wait, slots.sem.clone().acquire_owned()).await;
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(busy(format!(
                "and none freed within {} s",
                self.wait.as_secs()
            ))),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcome {
    tenant: String,
    /// `ok`, `refused` (401/403) or `throttled` (429).
    outcome: String,
}

/// The current [`Access`], replaced on reload, and what outlives versions:
/// the audit log and the tenant metrics.
pub struct AccessControl {
    current: RwLock<Arc<Access>>,
    audit: AuditLog,
    requests: Family<TenantOutcome, Counter>,
}

impl AccessControl {
    pub fn new(access: Access, audit: AuditLog) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(access)),
            audit,
            requests: Family::default(),
        })
    }

    pub fn current(&self) -> Arc<Access> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes effect for the next request; running ones finish under the
    /// version they started with.
    pub fn replace(&self, access: Access) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(access);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("sluice_query").register(
            "tenant_requests",
            "Requests of tenant-scoped callers by tenant (the first [query] tenant_metric_labels \
             tenants by name; the rest as other) and outcome (ok, refused, throttled)",
            self.requests.clone(),
        );
    }

    fn count(&self, access: &Access, tenant: &str, outcome: &str) {
        self.requests
            .get_or_create(&TenantOutcome {
                tenant: access.metric_label(tenant),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// What each route needs: the roles that may call it. SQL is open to
/// every role: what it reads is bounded by the role's tables
/// ([`Role::tables`]) and the caller's tenant, not by the route.
fn allowed(path: &str) -> &'static [Role] {
    if path.starts_with("/v1/services/")
        || path == "/v1/sql"
        || path == "/v1/tables"
        || path == "/v1/alerts"
        || path.starts_with("/api/v1/")
    {
        &[Role::Analyst, Role::Operator, Role::Admin]
    } else if path.starts_with("/v1/logs") || path.starts_with("/loki/") {
        &[Role::Operator, Role::Admin]
    } else {
        &[Role::Analyst, Role::Admin]
    }
}

/// Routes whose answers are not cut by tenant (the alert APIs show every
/// namespace's alerts): refused to tenants' callers.
fn global_only(path: &str) -> bool {
    path == "/v1/alerts" || path.starts_with("/api/v1/")
}

/// The middleware: identifies the caller, checks the route and the tenant
/// header, audits, and holds a tenant's query slot while the request runs.
pub async fn authorize(
    State(control): State<Arc<AccessControl>>,
    request: Request,
    next: Next,
) -> Response {
    let access = control.current();
    let path = request.uri().path().to_string();
    let method = request.method().to_string();
    let header = request
        .headers()
        .get(SCOPE_HEADER)
        .map(|v| v.to_str().map(str::trim).map(str::to_string));
    let refuse = |e: QueryError, who: &str, role: Option<Role>, tenant: Option<&str>| {
        let status = e.status().as_u16();
        control.audit.write(&AuditEvent {
            event: "refused",
            who,
            role,
            tenant,
            method: &method,
            path: &path,
            status,
            reason: Some(&e.to_string()),
        });
        if let Some(t) = tenant {
            let outcome = if status == 429 {
                "throttled"
            } else {
                "refused"
            };
            control.count(&access, t, outcome);
        }
        e.into_response()
    };
    // The headers alone cross the await (a request's body is not Sync).
    let headers = request.headers().clone();
    let caller = match access.identify(&headers).await {
        Ok(c) => c,
        Err(e) => return refuse(e, "?", None, None),
    };
    let who = caller
        .as_ref()
        .map_or("open", |c| c.who.as_str())
        .to_string();
    let role = caller.as_ref().map(|c| c.role);
    if let Some(c) = &caller
        && !allowed(&path).contains(&c.role)
    {
        let tenant = c.tenant.as_ref().map(|t| t.name.clone());
        return refuse(
            QueryError::Forbidden(path.clone()),
            &who,
            role,
            tenant.as_deref(),
        );
    }
    // The tenant this request reads for: the caller's own, or the one a
    // global caller names in X-Scope-OrgID.
    let own = caller.as_ref().and_then(|c| c.tenant.clone());
    let tenant = match (header, own) {
        (None, own) => own,
        (Some(Err(_)), own) => {
            let t = own.as_ref().map(|t| t.name.clone());
            return refuse(
                QueryError::BadRequest(format!("{SCOPE_HEADER} is not text")),
                &who,
                role,
                t.as_deref(),
            );
        }
        (Some(Ok(named)), Some(own)) if named == own.name => Some(own),
        (Some(Ok(named)), Some(own)) => {
            return refuse(
                QueryError::Denied(format!(
                    "{SCOPE_HEADER} {named:?} is not this token's tenant"
                )),
                &who,
                role,
                Some(&own.name),
            );
        }
        // Without tenants the header means nothing here, as before they
        // existed (Grafana's Loki data sources often send one).
        (Some(Ok(_)), None) if access.tenants.is_empty() => None,
        (Some(Ok(named)), None) => match access.tenants.get(&named) {
            Some(t) => {
                control.audit.write(&AuditEvent {
                    event: "as_tenant",
                    who: &who,
                    role,
                    tenant: Some(&named),
                    method: &method,
                    path: &path,
                    status: 0,
                    reason: None,
                });
                Some(t.clone())
            }
            None => {
                return refuse(
                    QueryError::Denied(format!("{SCOPE_HEADER} {named:?} names no tenant")),
                    &who,
                    role,
                    None,
                );
            }
        },
    };
    if let Some(t) = &tenant
        && global_only(&path)
    {
        return refuse(
            QueryError::Denied(format!(
                "{path} shows every tenant's data; a tenant's caller may not call it"
            )),
            &who,
            role,
            Some(&t.name),
        );
    }
    let _slot = match &tenant {
        Some(t) => match access.slot(&t.name).await {
            Ok(s) => {
                control.count(&access, &t.name, "ok");
                s
            }
            Err(e) => return refuse(e, &who, role, Some(&t.name)),
        },
        None => {
            // Reading across tenants is privileged once there are tenants;
            // an admin's every request is.
            if role == Some(Role::Admin) || (caller.is_some() && !access.tenants.is_empty()) {
                control.audit.write(&AuditEvent {
                    event: if role == Some(Role::Admin) {
                        "admin"
                    } else {
                        "all_tenants"
                    },
                    who: &who,
                    role,
                    tenant: None,
                    method: &method,
                    path: &path,
                    status: 0,
                    reason: None,
                });
            }
            None
        }
    };
    let mut request = request;
    match caller {
        Some(mut c) => {
            c.tenant = tenant;
            request.extensions_mut().insert(c);
        }
        None => {
            // An open API: the header alone scopes the request.
            if tenant.is_some() {
                request.extensions_mut().insert(Caller {
                    key: crate::isolation::ANONYMOUS.to_string(),
                    who: "open".to_string(),
                    role: Role::Admin,
                    tenant,
                });
            }
        }
    }
    next.run(request).await
}
