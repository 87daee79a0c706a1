//! OIDC bearer tokens: JWTs an identity provider signs, checked against the
//! keys it publishes (a JWKS document, from a URL or a file).
//!
//! Why it is built the way it is:
//! - The key is chosen by the token header's `kid`, and the algorithm must
//!   be one the JWK's own key type allows (and its `alg`, if it names one).
//!   The header's `alg` alone is never trusted: `none` and every HMAC
//!   algorithm are refused outright, so a token "signed" with a public key
//!   used as an HMAC secret cannot pass, and symmetric (`oct`) keys in a
//!   JWKS are ignored (a JWKS is public).
//! - `exp`, `iss` and `aud` are required; `nbf` is checked when present;
//!   both with the configured clock-skew leeway.
//! - Providers rotate keys: the JWKS is fetched again every
//!   `refresh_secs` in the background, and at once when a token names a
//!   `kid` we do not know — but at most once per 10 s, so tokens with
//!   made-up `kid`s cannot make us hammer the provider. A failed fetch
//!   keeps the last good key set (and says so with `tracing::warn!`).
//! - Error messages are fit for a 401 body: they never repeat the token,
//!   nor say where the keys come from.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JWKS fetch that takes longer than this is a failed one: a request
/// waiting on a new `kid` should not hang on a slow provider.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one fetch triggered by unknown `kid`s per this interval.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// A JWKS is a few keys; anything much larger is not one.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// Real tokens are a few KiB; bigger ones are refused before any decoding.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A leeway of more than this would make `exp` mostly decorative.
const MAX_LEEWAY_SECS: u64 = 600;
/// Refreshing more often than this gains nothing and loads the provider.
const MIN_REFRESH_SECS: u64 = 10;
/// How much of a token's `kid` an error message repeats.
const MAX_KID_CHARS: usize = 64;

fn default_leeway_secs() -> u64 {
    60
}

fn default_refresh_secs() -> u64 {
    300
}

fn default_role_claim() -> String {
    "sluice_role".to_owned()
}

fn default_tenant_claim() -> String {
    "sluice_tenant".to_owned()
}

/// `[query.jwt]`: which identity provider's tokens are accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry (the provider's issuer URL).
    pub issuer: String,
    /// `aud` must contain at least one of these (the client IDs tokens are
    /// minted for); never empty, or any token for any client would pass.
    pub audiences: Vec<String>,
    /// `http(s)://` URL of the provider's JWKS document (OIDC
    /// `jwks_uri`). Exactly one of `jwks_url` and `jwks_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Path of a local JWKS document (a mounted secret, an air-gapped
    /// setup). Exactly one of `jwks_url` and `jwks_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// How often the JWKS is fetched again, in seconds, so that keys the
    /// provider rotates in or out are picked up.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// The claim that names the caller's role (a string, or an array of
    /// strings whose first is taken).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim that names the caller's tenant (a string).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
}

impl JwtConfig {
    /// Checks what serde cannot: the messages name the setting and say
    /// what is wrong, for an operator reading a startup error.
    pub fn validate(&self) -> Result<(), String> {
        const AT: &str = "[query.jwt]";
        if self.issuer.trim().is_empty() {
            return Err(format!("{AT} issuer: must not be empty"));
        }
        if self.audiences.is_empty() {
            return Err(format!(
                "{AT} audiences: name at least one audience (the client ID tokens are issued for)"
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(format!("{AT} audiences: an audience must not be empty"));
        }
        match (&self.jwks_url, &self.jwks_file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{AT} jwks_url and jwks_file: set exactly one of them, not both"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "{AT} jwks_url or jwks_file: set one of them (where the signing keys come from)"
                ));
            }
            (Some(url), None) => check_jwks_url(url).map_err(|e| format!("{AT} jwks_url: {e}"))?,
            (None, Some(path)) => {
                if path.trim().is_empty() {
                    return Err(format!("{AT} jwks_file: must not be empty"));
                }
            }
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!(
                "{AT} leeway_secs: {} is more than the {MAX_LEEWAY_SECS} s allowed",
                self.leeway_secs
            ));
        }
        if self.refresh_secs < MIN_REFRESH_SECS {
            return Err(format!(
                "{AT} refresh_secs: {} is less than the {MIN_REFRESH_SECS} s allowed",
                self.refresh_secs
            ));
        }
        if self.role_claim.trim().is_empty() {
            return Err(format!("{AT} role_claim: must not be empty"));
        }
        if self.tenant_claim.trim().is_empty() {
            return Err(format!("{AT} tenant_claim: must not be empty"));
        }
        Ok(())
    }
}

fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must be an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// What a valid token says about its bearer. Role and tenant are returned
/// as the provider wrote them: what they mean is the caller's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `sub`, if present.
    pub subject: Option<String>,
    /// The configured role claim, if present.
    pub role: Option<String>,
    /// The configured tenant claim, if present.
    pub tenant: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Why a token was refused. Each message is fit for a 401 body: it never
/// repeats the token (only, shortened, the `kid` it names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments, or a header or payload that is not
    /// JSON, or a token too large.
    #[error("malformed token")]
    Malformed,
    /// `alg` is `none`, an HMAC algorithm, or one we do not know.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// No published key has the token's `kid`, even after fetching the
    /// keys again (or that fetch was not due yet).
    #[error("unknown signing key ({})", kid_label(.kid))]
    UnknownKey {
        /// The token's `kid`, shortened and made printable.
        kid: Option<String>,
    },
    /// The key exists, but its type (or its JWK `alg`) does not allow the
    /// token's algorithm.
    #[error("algorithm not allowed for this signing key")]
    AlgorithmMismatch,
    /// The published key could not be used (bad key material).
    #[error("signing key unusable")]
    KeyUnusable,
    /// The signature does not verify with the named key.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` is ahead, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud`) is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// A claim has the wrong type (the name is ours, not the token's).
    #[error("invalid claim {0}")]
    InvalidClaim(String),
    /// The token names a key we do not have and fetching the keys failed;
    /// the details are in the log, not in this message.
    #[error("JWKS unavailable: {0}")]
    JwksUnavailable(String),
}

fn kid_label(kid: &Option<String>) -> String {
    match kid {
        Some(kid) => format!("kid \"{kid}\""),
        None => "token names no kid".to_owned(),
    }
}

/// A `kid` from a token, made safe to repeat in a message or a log line.
fn printable_kid(kid: &str) -> String {
    let mut out: String = kid
        .chars()
        .take(MAX_KID_CHARS)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if kid.chars().count() > MAX_KID_CHARS {
        out.push('…');
    }
    out
}

impl JwtError {
    fn from_jsonwebtoken(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Self::InvalidSignature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::WrongIssuer,
            K::InvalidAudience => Self::WrongAudience,
            K::MissingRequiredClaim(claim) => Self::MissingClaim(claim.clone()),
            K::InvalidClaimFormat(claim) => Self::InvalidClaim(claim.clone()),
            K::InvalidAlgorithm
            | K::UnsupportedAlgorithm
            | K::MissingAlgorithm
            | K::InvalidAlgorithmName => Self::UnsupportedAlgorithm,
            K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
                Self::KeyUnusable
            }
            _ => Self::Malformed,
        }
    }
}

/// Where the JWKS document comes from; its `Display` is what error and log
/// messages name.
#[derive(Clone, Debug)]
enum JwksSource {
    Url(String),
    File(PathBuf),
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => write!(f, "JWKS {url}"),
            Self::File(path) => write!(f, "JWKS file {}", path.display()),
        }
    }
}

/// One usable published key and the algorithms it may verify.
struct KeyEntry {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The keys of one JWKS document.
struct KeySet {
    keys: Vec<KeyEntry>,
}

impl KeySet {
    /// The keys a token may have been signed with: those with its `kid`;
    /// a token without one is accepted only when there is no choice.
    fn candidates(&self, kid: Option<&str>) -> Vec<&KeyEntry> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => Vec::new(),
        }
    }

    fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(none)"))
            .collect()
    }
}

/// Checks bearer tokens against a provider's keys. Cheap to clone (one
/// `Arc`); every clone shares the keys and the background refresh, which
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    source: JwksSource,
    /// Only for a `jwks_url`.
    client: Option<reqwest::Client>,
    /// `iss`, `aud`, required claims and leeway; `algorithms` is set per
    /// token to the one its key allows.
    validation: Validation,
    role_claim: String,
    tenant_claim: String,
    /// The last good key set. Readers clone the `Arc` and let go at once.
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch started. Held across a fetch, so concurrent
    /// requests with a new `kid` wait for one fetch instead of each
    /// starting theirs.
    last_fetch: tokio::sync::Mutex<Instant>,
    min_refetch: Duration,
    refresher: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let handle = match self.refresher.get_mut() {
            Ok(handle) => handle.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.inner.current_keys();
        f.debug_struct("JwtVerifier")
            .field("source", &self.inner.source.to_string())
            .field("kids", &keys.kids())
            .finish_non_exhaustive()
    }
}

/// The header fields a key is chosen by.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// What fetching the keys on an unknown `kid` did.
enum Refetch {
    Done,
    TooSoon,
    Failed,
}

impl JwtVerifier {
    /// Validates `config` and loads the JWKS once: a provider that cannot
    /// be reached at startup is a configuration error, named in the
    /// message. Then keeps the keys fresh in the background (which is why
    /// this must run inside a Tokio runtime).
    pub async fn new(config: JwtConfig) -> Result<Self, String> {
        let refresh_every = Duration::from_secs(config.refresh_secs);
        Self::with_timing(config, refresh_every, MIN_REFETCH_INTERVAL).await
    }

    /// [`JwtVerifier::new`] with the refresh period and the unknown-`kid`
    /// rate limit given directly, so tests need not wait 10 s.
    #[doc(hidden)]
    pub async fn with_timing(
        config: JwtConfig,
        refresh_every: Duration,
        min_refetch: Duration,
    ) -> Result<Self, String> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            "the JWT verifier needs a Tokio runtime (it refreshes keys in the background)"
                .to_owned()
        })?;
        let (source, client) = match (&config.jwks_url, &config.jwks_file) {
            (Some(url), _) => {
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("JWKS {url}: HTTP client: {}", chain(&e)))?;
                warn_if_plain_http(url);
                (JwksSource::Url(url.clone()), Some(client))
            }
            (None, Some(path)) => (JwksSource::File(PathBuf::from(path)), None),
            // validate() has ruled this out; an error, not a panic, all the same.
            (None, None) => return Err("[query.jwt]: no jwks_url or jwks_file".to_owned()),
        };

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&config.audiences);

        let started = Instant::now();
        let keys = load(&source, client.as_ref()).await?;
        tracing::info!(source = %source, kids = ?keys.kids(), "loaded the JWT signing keys");

        let inner = Arc::new(Inner {
            source,
            client,
            validation,
            role_claim: config.role_claim,
            tenant_claim: config.tenant_claim,
            keys: RwLock::new(Arc::new(keys)),
            last_fetch: tokio::sync::Mutex::new(started),
            min_refetch,
            refresher: std::sync::Mutex::new(None),
        });
        let handle = spawn_refresher(&runtime, &inner, refresh_every);
        match inner.refresher.lock() {
            Ok(mut slot) => *slot = Some(handle),
            Err(poisoned) => *poisoned.into_inner() = Some(handle),
        }
        Ok(Self { inner })
    }

    /// Checks `token`'s signature and claims; the claims sluice uses, if
    /// it passes.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = parse_header(token)?;
        let kid = header.kid.as_deref();

        let mut keys = self.inner.current_keys();
        if keys.candidates(kid).is_empty() {
            // Maybe the provider rotated in a key since the last fetch.
            match self.inner.refetch_for_unknown_kid().await {
                Refetch::Done | Refetch::TooSoon => keys = self.inner.current_keys(),
                Refetch::Failed => {
                    return Err(JwtError::JwksUnavailable(
                        "could not fetch the signing keys".to_owned(),
                    ));
                }
            }
        }
        let candidates = keys.candidates(kid);
        if candidates.is_empty() {
            return Err(JwtError::UnknownKey {
                kid: kid.map(printable_kid),
            });
        }
        let Some(entry) = candidates
            .iter()
            .find(|k| k.algorithms.contains(&header.alg))
        else {
            return Err(JwtError::AlgorithmMismatch);
        };

        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &entry.key, &validation)
            .map_err(|e| JwtError::from_jsonwebtoken(&e))?;
        // The library read the header again; it must have read the same one.
        if data.header.alg != header.alg || data.header.kid.as_deref() != kid {
            return Err(JwtError::Malformed);
        }
        self.inner.claims(&data.claims)
    }

    /// Whether `token` has the shape of a JWS (three base64url segments,
    /// the first a JSON object): cheap, so a caller can try its static
    /// tokens first and send only JWT-shaped ones here.
    pub fn looks_like_jwt(token: &str) -> bool {
        if token.len() > MAX_TOKEN_BYTES || !token.starts_with("ey") {
            return false;
        }
        let mut segments = 0;
        for segment in token.split('.') {
            segments += 1;
            if segment.is_empty()
                || !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return false;
            }
        }
        segments == 3
    }
}

impl Inner {
    fn current_keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, keys: KeySet) {
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// Fetches the keys now (the periodic refresh); a failure keeps the
    /// last good set.
    async fn refresh(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        *last_fetch = Instant::now();
        self.fetch_and_install("periodic refresh").await;
    }

    /// Fetches the keys because a token named an unknown `kid`, unless a
    /// fetch started less than `min_refetch` ago.
    async fn refetch_for_unknown_kid(&self) -> Refetch {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.elapsed() < self.min_refetch {
            return Refetch::TooSoon;
        }
        *last_fetch = Instant::now();
        if self.fetch_and_install("unknown kid").await {
            Refetch::Done
        } else {
            Refetch::Failed
        }
    }

    async fn fetch_and_install(&self, why: &str) -> bool {
        match load(&self.source, self.client.as_ref()).await {
            Ok(keys) => {
                tracing::debug!(source = %self.source, why, kids = ?keys.kids(), "fetched the JWT signing keys");
                self.install(keys);
                true
            }
            Err(e) => {
                tracing::warn!(
                    why,
                    "JWT signing keys not refreshed, keeping the last good set: {e}"
                );
                false
            }
        }
    }

    fn claims(&self, claims: &Map<String, Value>) -> Result<Claims, JwtError> {
        let expires_at = match claims.get("exp") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
                .or_else(|| n.as_f64().map(|v| v as i64)),
            _ => None,
        }
        .ok_or_else(|| JwtError::InvalidClaim("exp".to_owned()))?;
        Ok(Claims {
            subject: string_claim(claims, "sub")?,
            role: role_claim(claims, &self.role_claim)?,
            tenant: string_claim(claims, &self.tenant_claim)?,
            expires_at,
        })
    }
}

/// A string claim; absent or `null` is `None`, another type an error.
fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::InvalidClaim(name.to_owned())),
    }
}

/// A role claim: a string, or an array of strings whose first is taken
/// (providers that put roles in groups send arrays).
fn role_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, JwtError> {
    match claims.get(name) {
        Some(Value::Array(items)) => {
            let mut strings = items.iter().map(Value::as_str);
            if strings.clone().any(|s| s.is_none()) {
                return Err(JwtError::InvalidClaim(name.to_owned()));
            }
            Ok(strings.next().flatten().map(str::to_owned))
        }
        _ => string_claim(claims, name),
    }
}

/// Reads the header for its `alg` and `kid`, refusing `none` and HMAC
/// before any key is looked up.
fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
    }

    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    let alg = Algorithm::from_str(&raw.alg).map_err(|_| JwtError::UnsupportedAlgorithm)?;
    if alg.family() == AlgorithmFamily::Hmac {
        return Err(JwtError::UnsupportedAlgorithm);
    }
    Ok(TokenHeader { alg, kid: raw.kid })
}

fn spawn_refresher(
    runtime: &tokio::runtime::Handle,
    inner: &Arc<Inner>,
    every: Duration,
) -> tokio::task::AbortHandle {
    // Weak, so the task does not keep the verifier alive; `Inner::drop`
    // aborts it.
    let weak = Arc::downgrade(inner);
    let task = runtime.spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            inner.refresh().await;
        }
    });
    task.abort_handle()
}

fn warn_if_plain_http(url: &str) {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return;
    };
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http" && !loopback {
        tracing::warn!(
            "JWKS {url} is plain HTTP: whoever can alter that traffic can mint tokens sluice accepts; use https"
        );
    }
}

/// Reads and parses the JWKS document; errors name the source.
async fn load(source: &JwksSource, client: Option<&reqwest::Client>) -> Result<KeySet, String> {
    let bytes = match (source, client) {
        (JwksSource::Url(url), Some(client)) => fetch(client, url).await,
        (JwksSource::Url(_), None) => Err("no HTTP client".to_owned()),
        (JwksSource::File(path), _) => read_file(path).await,
    }
    .map_err(|e| format!("{source}: {e}"))?;
    parse_jwks(&bytes, source).map_err(|e| format!("{source}: {e}"))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await
        .map_err(|e| chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES)
    {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_JWKS_BYTES {
            return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
        }
    }
    Ok(body)
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| e.to_string())?;
    if meta.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    tokio::fs::read(path).await.map_err(|e| e.to_string())
}

/// The usable signing keys of a JWKS document. Keys that are not for
/// signatures, or of a type or curve we do not verify, are skipped (a
/// provider may publish encryption keys alongside); a document with no
/// usable key at all is an error, so a broken one never replaces a good
/// set.
fn parse_jwks(bytes: &[u8], source: &JwksSource) -> Result<KeySet, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }

    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let total = doc.keys.len();
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for raw in doc.keys {
        let label = match raw.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key \"{}\"", printable_kid(kid)),
            None => "key without kid".to_owned(),
        };
        match usable_key(raw) {
            Ok(entry) => keys.push(entry),
            Err(why) => {
                tracing::debug!(source = %source, "{label} skipped: {why}");
                skipped.push(format!("{label}: {why}"));
            }
        }
    }
    if keys.is_empty() {
        return Err(if total == 0 {
            "the JWKS has no keys".to_owned()
        } else {
            format!(
                "no usable signing key among {total} ({})",
                skipped.join("; ")
            )
        });
    }
    Ok(KeySet { keys })
}

/// One JWK as a key entry, with the algorithms its type allows — never
/// an HMAC one.
fn usable_key(raw: Value) -> Result<KeyEntry, String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("not a JWK: {e}"))?;
    if let Some(key_use) = &jwk.common.public_key_use
        && *key_use != PublicKeyUse::Signature
    {
        return Err("not a signing key (\"use\")".to_owned());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("not a verification key (\"key_ops\")".to_owned());
    }
    let allowed: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms(),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(format!("unsupported EC curve {:?}", params.curve)),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err(format!("unsupported OKP curve {:?}", params.curve)),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) key: never used, a JWKS is public".to_owned());
        }
        _ => return Err("unsupported key type".to_owned()),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => allowed.to_vec(),
        Some(key_alg) => {
            let alg = Algorithm::try_from(key_alg)
                .map_err(|_| format!("\"alg\" {key_alg} is not a signature algorithm"))?;
            if !allowed.contains(&alg) {
                return Err(format!("\"alg\" {key_alg} does not fit the key type"));
            }
            vec![alg]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad key material: {e}"))?;
    Ok(KeyEntry {
        kid: jwk.common.key_id,
        key,
        algorithms,
    })
}

/// An error with its causes, for messages (reqwest's own `Display` stops
/// at "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(JwtVerifier::looks_like_jwt(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
        ));
        assert!(!JwtVerifier::looks_like_jwt(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0."
        ));
        assert!(!JwtVerifier::looks_like_jwt(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"
        ));
        assert!(!JwtVerifier::looks_like_jwt("eyJh.eyJz.c2ln.eA"));
        assert!(!JwtVerifier::looks_like_jwt(
            "static-token-of-forty-characters-000000"
        ));
        assert!(!JwtVerifier::looks_like_jwt("eyJh.eyJ=.c2ln"));
        assert!(!JwtVerifier::looks_like_jwt("abcd.efgh.ijkl"));
    }

    #[test]
    fn kids_are_shortened_and_printable() {
        assert_eq!(printable_kid("abc-1"), "abc-1");
        assert_eq!(printable_kid("a\"b\nc"), "a?b?c");
        let long = "k".repeat(200);
        assert_eq!(printable_kid(&long).chars().count(), MAX_KID_CHARS + 1);
    }

    #[test]
    fn header_alg_none_and_hmac_refused() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc("{}"));
        assert!(matches!(
            parse_header(&none),
            Err(JwtError::UnsupportedAlgorithm)
        ));
        let hs = format!("{}.{}.x", enc(r#"{"alg":"HS256","kid":"a"}"#), enc("{}"));
        assert!(matches!(
            parse_header(&hs),
            Err(JwtError::UnsupportedAlgorithm)
        ));
        let rs = format!("{}.{}.x", enc(r#"{"alg":"RS256","kid":"a"}"#), enc("{}"));
        let h = parse_header(&rs).map_err(|e| e.to_string());
        assert!(
            matches!(h, Ok(TokenHeader { alg: Algorithm::RS256, kid: Some(ref k) }) if k == "a")
        );
        assert!(matches!(parse_header("a.b"), Err(JwtError::Malformed)));
        assert!(matches!(parse_header("!!.b.c"), Err(JwtError::Malformed)));
    }

    #[test]
    fn oct_and_encryption_keys_skipped() {
        let oct = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        assert!(usable_key(oct).is_err());
        let enc =
            serde_json::json!({"kty": "RSA", "kid": "e", "use": "enc", "n": "AQAB", "e": "AQAB"});
        assert!(usable_key(enc).is_err());
        let mismatched =
            serde_json::json!({"kty": "RSA", "kid": "m", "alg": "ES256", "n": "AQAB", "e": "AQAB"});
        assert!(usable_key(mismatched).is_err());
        let rsa =
            serde_json::json!({"kty": "RSA", "kid": "r", "alg": "PS256", "n": "AQAB", "e": "AQAB"});
        let entry = usable_key(rsa).map_err(|e| e.to_string());
        assert!(matches!(entry, Ok(ref k) if k.algorithms == vec![Algorithm::PS256]));
    }
}
