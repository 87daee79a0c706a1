//! Tenants under `sluice up --demo`: a leak corpus.
//!
//! Tenant `spark` owns the demo's `spark-jobs` and `data-*` namespaces and
//! the `iom-cluster` and `typesense` services; tenant `platform` owns
//! `iomete-system` and the other services; `monitoring` and `kube-system`
//! are nobody's. With spark's credentials — static tokens of two roles and
//! an ES256 JWT signed by a key generated here, published in a JWKS file —
//! every attempt below (SQL through joins, subqueries, CTEs, UNION,
//! `information_schema`, `EXPLAIN`, string functions; log search by field,
//! by a word only other tenants' lines hold, with a cursor and context
//! taken from another tenant's hits; LogQL regex selectors over every
//! Loki endpoint; `X-Scope-OrgID` spoofing; forged, expired, foreign and
//! misaddressed JWTs) gets its documented answer (a filtered result, 401,
//! 403 or 429), and no answer holds one byte of a pod name, pod UID, user
//! or word that only other tenants' rows have. Positive controls show the
//! filters leave spark's own rows, and global operators everything; the
//! console in Chromium (`tests/console/tenant.mjs`) shows spark's token only
//! spark's namespaces, lines and services. The audit log records the refusals and the cross-tenant reads, and a change
//! of the configuration file takes effect without a restart.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use common::up::{spawn_up_with, wait_for};
use common::{HttpResponse, browser, enc, free_port, http, http_within};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const A_OPERATOR: &str = "spark-operator-token-0000001";
const A_ANALYST: &str = "spark-analyst-token-00000001";
const B_OPERATOR: &str = "platform-operator-token-0001";
const OPERATOR: &str = "global-operator-token-000001";
const A_CONSOLE: &str = "spark-console-token-00000001";
const A_INTAKE: &str = "spark-intake-token-000000001";
const ADMIN: &str = "global-admin-token-000000001";
const ISSUER: &str = "https://idp.example.test";
const A_NAMESPACES: [&str; 2] = ["spark-jobs", "data-plane"];
const A_SERVICES: [&str; 2] = ["iom-cluster", "typesense"];

fn config(jwks: &Path, spark_namespaces: &str, platform_max: usize, b_token: bool) -> String {
    let b = if b_token {
        format!(
            "[[query.tokens]]\ntoken = \"{B_OPERATOR}\"\nrole = \"operator\"\ntenant = \"platform\"\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"[collector]
intake_tokens = ["platform-intake-token-000001"]

[[collector.intake_tenant_tokens]]
token = "{A_INTAKE}"
tenant = "spark"

[[tenants]]
name = "spark"
namespaces = [{spark_namespaces}]
services = ["iom-cluster", "typesense"]
intake_events_per_sec = 5

[[tenants]]
name = "platform"
namespaces = ["iomete-system"]
services = ["iom-core", "iom-catalog", "iom-identity"]
max_concurrent = {platform_max}

[[query.tokens]]
token = "{A_OPERATOR}"
role = "operator"
tenant = "spark"
name = "spark-ops"

[[query.tokens]]
token = "{A_ANALYST}"
role = "analyst"
tenant = "spark"

[[query.tokens]]
token = "{A_CONSOLE}"
role = "admin"
tenant = "spark"

{b}
[[query.tokens]]
token = "{OPERATOR}"
role = "operator"
name = "platform-oncall"

[[query.tokens]]
token = "{ADMIN}"
role = "admin"

[query.jwt]
issuer = "{ISSUER}"
audiences = ["sluice"]
jwks_file = "{}"
leeway_secs = 30
"#,
        jwks.display()
    )
}

struct Signer {
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        Self {
            key,
            jwk: serde_json::to_value(&jwk).unwrap(),
        }
    }

    fn token(&self, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        encode(&header, &claims, &self.key).unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(tenant: &str, iss: &str, aud: &str, exp: i64) -> Value {
    json!({"sub": "alice@spark", "iss": iss, "aud": aud, "exp": exp,
           "sluice_role": "operator", "sluice_tenant": tenant})
}

fn call(addr: &str, method: &str, path: &str, token: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    http(addr, method, path, &headers, None)
}

fn sql_as(addr: &str, token: &str, query: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    let body = json!({ "sql": query }).to_string();
    http(addr, "POST", "/v1/sql", &headers, Some(body.as_bytes()))
}

fn rows(r: &HttpResponse) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["rows"].as_array().cloned().unwrap_or_default()
}

fn strings(r: &HttpResponse, column: &str) -> BTreeSet<String> {
    rows(r)
        .iter()
        .filter_map(|row| row[column].as_str().map(str::to_string))
        .collect()
}

/// What an attempt must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 200, with only the tenant's rows.
    Filtered,
    Status(u16),
}

struct Attempt {
    name: &'static str,
    token: String,
    /// `GET <path>` or an SQL statement (`sql` set).
    path: String,
    sql: Option<String>,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn get(name: &'static str, token: &str, path: String, expect: Expect) -> Attempt {
    Attempt {
        name,
        token: token.to_string(),
        path,
        sql: None,
        headers: Vec::new(),
        expect,
    }
}

fn sql_attempt(name: &'static str, token: &str, q: &str, expect: Expect) -> Attempt {
    Attempt {
        name,
        token: token.to_string(),
        path: "/v1/sql".into(),
        sql: Some(q.to_string()),
        headers: Vec::new(),
        expect,
    }
}

fn loki(path: &str, query: &str) -> String {
    format!("{path}?query={}&since=6h&limit=5000", enc(query))
}

#[test]
fn a_tenant_sees_its_own_rows_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let signer = Signer::new("key-1");
    let jwks = tmp.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [signer.jwk]}).to_string()).unwrap();
    let config_path = tmp.path().join("sluice.toml");
    let a_namespaces = "\"spark-jobs\", \"data-*\"";
    std::fs::write(&config_path, config(&jwks, a_namespaces, 1, true)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [("SLUICE_CONFIG", config_path.display().to_string())];
    let mut up = spawn_up_with(&data_dir, &addr, &["--demo"], &env);

    // Both tenants' rows are in the tables and the index.
    let admin_count = |q: &str| -> u64 {
        let r = sql_as(&addr, ADMIN, q, &[]);
        rows(&r)[0]["n"].as_u64().unwrap_or(0)
    };
    let in_a = "namespace IN ('spark-jobs', 'data-plane')";
    wait_for("both tenants' rows", Duration::from_secs(120), || {
        admin_count(&format!("SELECT count(*) AS n FROM pod_logs WHERE {in_a}")) > 0
            && admin_count("SELECT count(*) AS n FROM pod_logs WHERE namespace = 'iomete-system'")
                > 0
            && admin_count(
                "SELECT count(*) AS n FROM platform_event_logs WHERE service = 'iom-core'",
            ) > 0
            && admin_count(
                "SELECT count(*) AS n FROM platform_events WHERE namespace NOT IN ('spark-jobs', 'data-plane')",
            ) > 0
    });
    wait_for(
        "the index to hold both tenants' lines",
        Duration::from_secs(120),
        || {
            let total = |ns: &str| {
                call(
                    &addr,
                    "GET",
                    &format!("/v1/logs/search?q=*&namespace={ns}&limit=1"),
                    ADMIN,
                    &[],
                )
                .json()["total"]
                    .as_u64()
                    .unwrap_or(0)
            };
            total("iomete-system") > 0 && total("spark-jobs") > 0
        },
    );

    // What only other tenants' rows hold: pod names and UIDs outside
    // spark's namespaces, users only other services see, words only
    // other namespaces' lines have. Whatever spark's own rows also
    // contain is left out (it may rightly come back).
    let visible_to_a = [
        sql_as(
            &addr,
            ADMIN,
            &format!("SELECT * FROM pod_logs WHERE {in_a}"),
            &[],
        )
        .text(),
        sql_as(
            &addr,
            ADMIN,
            &format!("SELECT * FROM platform_events WHERE {in_a}"),
            &[],
        )
        .text(),
        sql_as(
            &addr,
            ADMIN,
            "SELECT * FROM platform_event_logs WHERE service IN ('iom-cluster', 'typesense')",
            &[],
        )
        .text(),
    ]
    .concat();
    let others = "namespace NOT IN ('spark-jobs', 'data-plane')";
    let mut forbidden: BTreeSet<String> = BTreeSet::new();
    let r = sql_as(
        &addr,
        ADMIN,
        &format!("SELECT DISTINCT pod, pod_uid FROM pod_logs WHERE {others}"),
        &[],
    );
    for row in rows(&r) {
        for k in ["pod", "pod_uid"] {
            forbidden.insert(row[k].as_str().unwrap().to_string());
        }
    }
    let r = sql_as(
        &addr,
        ADMIN,
        "SELECT DISTINCT user_id FROM platform_event_logs WHERE service NOT IN ('iom-cluster', 'typesense') AND user_id IS NOT NULL \
         EXCEPT SELECT DISTINCT user_id FROM platform_event_logs WHERE service IN ('iom-cluster', 'typesense') AND user_id IS NOT NULL",
        &[],
    );
    // Users and words may turn up in spark's rows later (the demo goes
    // on): a hit on one of these is confirmed against spark's rows as they
    // are then.
    let users = strings(&r, "user_id");
    forbidden.extend(users.iter().cloned());
    let r = sql_as(
        &addr,
        ADMIN,
        &format!("SELECT message FROM pod_logs WHERE {others} LIMIT 2000"),
        &[],
    );
    let mut b_words: Vec<String> = Vec::new();
    for m in strings(&r, "message") {
        for w in m.split(|c: char| !c.is_ascii_alphanumeric()) {
            if w.len() >= 7
                && w.chars().all(|c| c.is_ascii_lowercase())
                && !visible_to_a.to_ascii_lowercase().contains(w)
                && !b_words.iter().any(|b| b == w)
            {
                b_words.push(w.to_string());
            }
        }
    }
    assert!(
        !b_words.is_empty(),
        "no word only other tenants' lines hold"
    );
    b_words.truncate(5);
    forbidden.extend(b_words.iter().cloned());
    forbidden.retain(|f| f.len() >= 5 && !visible_to_a.contains(f.as_str()));
    assert!(
        forbidden.len() >= 10,
        "too few forbidden strings: {forbidden:?}"
    );
    let b_pod = {
        let r = sql_as(
            &addr,
            ADMIN,
            "SELECT pod FROM pod_logs WHERE namespace = 'iomete-system' LIMIT 1",
            &[],
        );
        rows(&r)[0]["pod"].as_str().unwrap().to_string()
    };
    let b_word = b_words[0].clone();
    // A cursor and a hit taken from another tenant's search.
    let b_search = call(
        &addr,
        "GET",
        "/v1/logs/search?q=*&namespace=iomete-system&limit=2&context=3",
        ADMIN,
        &[],
    )
    .json();
    let b_cursor = b_search["next_cursor"].as_str().unwrap_or("").to_string();

    let jwt_a = signer.token("key-1", claims("spark", ISSUER, "sluice", now() + 600));
    let jwt_expired = signer.token("key-1", claims("spark", ISSUER, "sluice", now() - 3600));
    let jwt_foreign = signer.token(
        "key-1",
        claims("spark", "https://evil.test", "sluice", now() + 600),
    );
    let jwt_audience = signer.token(
        "key-1",
        claims("spark", ISSUER, "someone-else", now() + 600),
    );
    let jwt_unknown_tenant = signer.token("key-1", claims("nobody", ISSUER, "sluice", now() + 600));
    let rogue = Signer::new("key-1");
    let jwt_rogue = rogue.token("key-1", claims("spark", ISSUER, "sluice", now() + 600));
    let jwt_none = {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(r#"{"alg":"none","typ":"JWT","kid":"key-1"}"#),
            b.encode(claims("spark", ISSUER, "sluice", now() + 600).to_string())
        )
    };

    use Expect::*;
    let mut corpus = vec![
        // SQL, every shape.
        sql_attempt(
            "select all",
            A_OPERATOR,
            "SELECT * FROM pod_logs LIMIT 5000",
            Filtered,
        ),
        sql_attempt(
            "where other ns",
            A_OPERATOR,
            "SELECT * FROM pod_logs WHERE namespace = 'iomete-system'",
            Filtered,
        ),
        sql_attempt(
            "qualified",
            A_OPERATOR,
            "SELECT DISTINCT pod, pod_uid FROM sluice.platform.pod_logs",
            Filtered,
        ),
        sql_attempt(
            "subquery",
            A_OPERATOR,
            "SELECT * FROM (SELECT * FROM pod_logs) t WHERE t.namespace <> 'spark-jobs' LIMIT 20000",
            Filtered,
        ),
        sql_attempt(
            "in subquery",
            A_OPERATOR,
            "SELECT DISTINCT pod FROM pod_logs WHERE namespace IN (SELECT namespace FROM platform_events)",
            Filtered,
        ),
        sql_attempt(
            "cte",
            A_OPERATOR,
            "WITH x AS (SELECT * FROM platform.pod_logs) SELECT pod, message FROM x LIMIT 20000",
            Filtered,
        ),
        sql_attempt(
            "union",
            A_OPERATOR,
            "SELECT pod AS v FROM pod_logs UNION SELECT name FROM platform_events UNION SELECT pod_uid FROM pod_logs",
            Filtered,
        ),
        sql_attempt(
            "self join",
            A_OPERATOR,
            "SELECT DISTINCT a.pod, b.pod_uid FROM pod_logs a JOIN pod_logs b ON a.container = b.container AND a.namespace <> b.namespace",
            Filtered,
        ),
        sql_attempt(
            "cross join events",
            A_OPERATOR,
            "SELECT DISTINCT e.name, e.message FROM platform_events e CROSS JOIN (SELECT 1) o",
            Filtered,
        ),
        sql_attempt(
            "string functions",
            A_OPERATOR,
            "SELECT string_agg(DISTINCT pod, ',') AS pods, array_agg(DISTINCT pod_uid) AS uids FROM pod_logs",
            Filtered,
        ),
        sql_attempt(
            "casts and upper",
            A_OPERATOR,
            "SELECT DISTINCT concat('x', CAST(pod AS VARCHAR)) AS p, lower(pod_uid) AS u FROM pod_logs WHERE CAST(namespace AS VARCHAR) LIKE '%'",
            Filtered,
        ),
        sql_attempt(
            "regex",
            A_OPERATOR,
            "SELECT DISTINCT pod FROM pod_logs WHERE namespace ~ '.*'",
            Filtered,
        ),
        sql_attempt(
            "case-folded name",
            A_OPERATOR,
            "SELECT DISTINCT pod FROM POD_LOGS",
            Filtered,
        ),
        sql_attempt(
            "quoted name",
            A_OPERATOR,
            "SELECT DISTINCT pod FROM \"pod_logs\"",
            Filtered,
        ),
        sql_attempt(
            "information_schema tables",
            A_OPERATOR,
            "SELECT * FROM information_schema.tables",
            Filtered,
        ),
        sql_attempt(
            "information_schema columns",
            A_OPERATOR,
            "SELECT * FROM information_schema.columns",
            Filtered,
        ),
        sql_attempt(
            "explain",
            A_OPERATOR,
            "EXPLAIN SELECT * FROM pod_logs WHERE namespace = 'iomete-system'",
            Filtered,
        ),
        sql_attempt(
            "explain analyze",
            A_OPERATOR,
            "EXPLAIN ANALYZE SELECT count(*) FROM pod_logs",
            Filtered,
        ),
        sql_attempt(
            "window",
            A_OPERATOR,
            "SELECT pod, row_number() OVER (PARTITION BY namespace) AS n FROM pod_logs LIMIT 5000",
            Filtered,
        ),
        sql_attempt(
            "alert history hidden",
            A_OPERATOR,
            "SELECT * FROM alert_history",
            Status(400),
        ),
        sql_attempt(
            "event logs own services",
            A_ANALYST,
            "SELECT * FROM platform_event_logs LIMIT 5000",
            Filtered,
        ),
        sql_attempt(
            "event logs other service",
            A_ANALYST,
            "SELECT user_id, path FROM platform_event_logs WHERE service = 'iom-core'",
            Filtered,
        ),
        sql_attempt(
            "event logs via union",
            A_ANALYST,
            "SELECT user_id FROM platform_event_logs UNION SELECT service FROM platform_event_logs",
            Filtered,
        ),
        sql_attempt(
            "jwt sql",
            &jwt_a,
            "SELECT DISTINCT pod, pod_uid FROM pod_logs",
            Filtered,
        ),
        get("tables", A_OPERATOR, "/v1/tables".into(), Filtered),
        // Log search.
        get(
            "search all",
            A_OPERATOR,
            "/v1/logs/search?q=*&limit=500&context=2".into(),
            Filtered,
        ),
        get(
            "search other ns param",
            A_OPERATOR,
            "/v1/logs/search?q=*&namespace=iomete-system&limit=100".into(),
            Filtered,
        ),
        get(
            "search field syntax",
            A_OPERATOR,
            format!(
                "/v1/logs/search?q={}&limit=100",
                enc("namespace:iomete-system OR namespace:monitoring")
            ),
            Filtered,
        ),
        get(
            "search other pod",
            A_OPERATOR,
            format!("/v1/logs/search?q=*&pod={}&limit=100", enc(&b_pod)),
            Filtered,
        ),
        get(
            "search other word",
            A_OPERATOR,
            format!("/v1/logs/search?q={}&limit=100&context=5", enc(&b_word)),
            Filtered,
        ),
        get(
            "search words OR",
            A_OPERATOR,
            format!("/v1/logs/search?q={}&limit=100", enc(&b_words.join(" OR "))),
            Filtered,
        ),
        get(
            "search other cursor",
            A_OPERATOR,
            format!(
                "/v1/logs/search?q=*&limit=100&cursor={}&context=5",
                enc(&b_cursor)
            ),
            Filtered,
        ),
        get(
            "restarts of other pod",
            A_OPERATOR,
            format!(
                "/v1/logs/restarts?namespace=iomete-system&pod={}",
                enc(&b_pod)
            ),
            Filtered,
        ),
        get(
            "jwt search",
            &jwt_a,
            format!("/v1/logs/search?q={}&limit=100", enc(&b_word)),
            Filtered,
        ),
        // Loki, every endpoint.
        get(
            "loki range regex",
            A_OPERATOR,
            loki("/loki/api/v1/query_range", "{namespace=~\".+\"}"),
            Filtered,
        ),
        get(
            "loki range other ns",
            A_OPERATOR,
            loki("/loki/api/v1/query_range", "{namespace=\"iomete-system\"}"),
            Filtered,
        ),
        get(
            "loki range negative",
            A_OPERATOR,
            loki(
                "/loki/api/v1/query_range",
                "{namespace!=\"spark-jobs\", pod=~\".+\"}",
            ),
            Filtered,
        ),
        get(
            "loki range word",
            A_OPERATOR,
            loki(
                "/loki/api/v1/query_range",
                &format!("{{pod=~\".+\"}} |= \"{b_word}\""),
            ),
            Filtered,
        ),
        get(
            "loki instant",
            A_OPERATOR,
            loki("/loki/api/v1/query", "{pod=~\".+\", namespace=~\".*\"}"),
            Filtered,
        ),
        get(
            "loki metric",
            A_OPERATOR,
            loki(
                "/loki/api/v1/query_range",
                "sum by (namespace, pod) (count_over_time({namespace=~\".+\"}[1h]))",
            ),
            Filtered,
        ),
        get(
            "loki binary metric",
            A_OPERATOR,
            loki(
                "/loki/api/v1/query",
                "sum by (namespace, pod) (count_over_time({pod=~\".+\"}[1h])) * 2",
            ),
            Filtered,
        ),
        get(
            "loki labels",
            A_OPERATOR,
            "/loki/api/v1/labels?since=6h".into(),
            Filtered,
        ),
        get(
            "loki namespace values",
            A_OPERATOR,
            "/loki/api/v1/label/namespace/values?since=6h".into(),
            Filtered,
        ),
        get(
            "loki pod values",
            A_OPERATOR,
            "/loki/api/v1/label/pod/values?since=6h".into(),
            Filtered,
        ),
        get(
            "loki pod values of other ns",
            A_OPERATOR,
            format!(
                "/loki/api/v1/label/pod/values?since=6h&query={}",
                enc("{namespace=\"iomete-system\"}")
            ),
            Filtered,
        ),
        get(
            "loki series",
            A_OPERATOR,
            format!(
                "/loki/api/v1/series?since=6h&match[]={}",
                enc("{namespace=~\".+\"}")
            ),
            Filtered,
        ),
        get(
            "loki stats",
            A_OPERATOR,
            loki("/loki/api/v1/index/stats", "{namespace=~\".+\"}"),
            Filtered,
        ),
        get(
            "loki volume",
            A_OPERATOR,
            format!(
                "{}&targetLabels=namespace,pod",
                loki("/loki/api/v1/index/volume", "{namespace=~\".+\"}")
            ),
            Filtered,
        ),
        // The analyst's routes.
        get(
            "attribution",
            A_ANALYST,
            "/v1/attribution?by=user&since=24h&limit=1000".into(),
            Filtered,
        ),
        get(
            "attribution by service",
            A_ANALYST,
            "/v1/attribution?by=service&since=24h".into(),
            Filtered,
        ),
        get(
            "attribution other service",
            A_ANALYST,
            "/v1/attribution?by=user&service=iom-core&since=24h".into(),
            Filtered,
        ),
        get(
            "guardrail peaks",
            A_ANALYST,
            "/v1/guardrails/peaks?by=user&window=1m&since=7d&limit=1000".into(),
            Filtered,
        ),
        get(
            "other service health",
            A_OPERATOR,
            "/v1/services/iomete-system/iom-core/health?since=24h".into(),
            Filtered,
        ),
        // Routes that are not cut by tenant.
        get(
            "alerts console api",
            A_OPERATOR,
            "/v1/alerts".into(),
            Status(403),
        ),
        get(
            "prometheus rules",
            A_OPERATOR,
            "/api/v1/rules".into(),
            Status(403),
        ),
        get(
            "prometheus alerts",
            A_ANALYST,
            "/api/v1/alerts".into(),
            Status(403),
        ),
        get(
            "analyst on logs",
            A_ANALYST,
            "/v1/logs/search?q=*".into(),
            Status(403),
        ),
        // Credentials that do not hold.
        get("no token", "", "/v1/logs/search?q=*".into(), Status(401)),
        get(
            "wrong token",
            "spark-operator-token-0000002",
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "expired jwt",
            &jwt_expired,
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "foreign issuer",
            &jwt_foreign,
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "wrong audience",
            &jwt_audience,
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "rogue key",
            &jwt_rogue,
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "alg none",
            &jwt_none,
            "/v1/logs/search?q=*".into(),
            Status(401),
        ),
        get(
            "unknown tenant claim",
            &jwt_unknown_tenant,
            "/v1/logs/search?q=*".into(),
            Status(403),
        ),
    ];
    // X-Scope-OrgID: another tenant's is refused, its own accepted.
    for (name, token, org, expect) in [
        ("spoof org", A_OPERATOR, "platform", Status(403)),
        ("spoof unknown org", A_OPERATOR, "nobody", Status(403)),
        ("own org", A_OPERATOR, "spark", Filtered),
        ("jwt spoof org", jwt_a.as_str(), "platform", Status(403)),
        ("global as spark", OPERATOR, "spark", Filtered),
    ] {
        let mut a = get(
            name,
            token,
            loki("/loki/api/v1/query_range", "{namespace=~\".+\"}"),
            expect,
        );
        a.headers.push(("X-Scope-OrgID", org.to_string()));
        corpus.push(a);
    }
    assert!(corpus.len() >= 40, "{} attempts", corpus.len());

    let mut failures = Vec::new();
    // A user or word that spark's own rows hold by now (the demo keeps
    // writing) is no longer only other tenants'.
    let now_spark_s = |f: &String| -> bool {
        let n = if users.contains(f) {
            admin_count(&format!(
                "SELECT count(*) AS n FROM platform_event_logs WHERE service IN ('iom-cluster', 'typesense') AND user_id = '{f}'"
            ))
        } else if b_words.contains(f) {
            admin_count(&format!(
                "SELECT count(*) AS n FROM pod_logs WHERE {in_a} AND strpos(lower(message), '{f}') > 0"
            ))
        } else {
            0
        };
        n > 0
    };
    for a in &corpus {
        let headers: Vec<(&str, &str)> = a.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = match &a.sql {
            Some(q) => sql_as(&addr, &a.token, q, &headers),
            None if a.token.is_empty() => http(&addr, "GET", &a.path, &headers, None),
            None => call(&addr, "GET", &a.path, &a.token, &headers),
        };
        let body = r.text();
        let want = match a.expect {
            Filtered => 200,
            Status(s) => s,
        };
        if r.status != want {
            failures.push(format!(
                "{}: status {} (want {want}): {body}",
                a.name, r.status
            ));
        }
        // What the request itself names may come back (an echo of the
        // parameters), not from other tenants' rows.
        let asked = format!(
            "{} {} {:?}",
            a.path,
            a.sql.as_deref().unwrap_or(""),
            a.headers
        );
        let leaks: Vec<&String> = forbidden
            .iter()
            // A user is a whole JSON value ("vera.nguyen" is not a leak in
            // spark's "vera.nguyen25").
            .filter(|f| {
                let shown = if users.contains(*f) {
                    body.contains(&format!("\"{f}\""))
                } else {
                    body.contains(f.as_str())
                };
                shown && !asked.contains(f.as_str())
            })
            .filter(|f| !now_spark_s(f))
            .collect();
        if let Some(leak) = leaks.first() {
            failures.push(format!("{}: LEAK of {leak:?} in {body}", a.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attempts failed:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );

    // Positive controls: the filters keep spark's own rows.
    let namespaces = strings(
        &sql_as(
            &addr,
            A_OPERATOR,
            "SELECT DISTINCT namespace FROM pod_logs",
            &[],
        ),
        "namespace",
    );
    assert!(
        !namespaces.is_empty()
            && namespaces
                .iter()
                .all(|n| A_NAMESPACES.contains(&n.as_str())),
        "{namespaces:?}"
    );
    let own = |q: &str| {
        rows(&sql_as(&addr, A_OPERATOR, q, &[]))[0]["n"]
            .as_u64()
            .unwrap()
    };
    let n_a = own("SELECT count(*) AS n FROM pod_logs WHERE ts < now() - INTERVAL '5 seconds'");
    let n_admin = admin_count(&format!(
        "SELECT count(*) AS n FROM pod_logs WHERE {in_a} AND ts < now() - INTERVAL '5 seconds'"
    ));
    assert!(
        n_a > 0 && n_a <= n_admin,
        "spark sees {n_a} of its {n_admin} lines"
    );
    let services = strings(
        &sql_as(
            &addr,
            A_ANALYST,
            "SELECT DISTINCT service FROM platform_event_logs",
            &[],
        ),
        "service",
    );
    assert!(
        !services.is_empty() && services.iter().all(|s| A_SERVICES.contains(&s.as_str())),
        "{services:?}"
    );
    let tables: BTreeSet<String> =
        call(&addr, "GET", "/v1/tables", A_ANALYST, &[]).json()["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect();
    assert_eq!(tables, BTreeSet::from(["platform_event_logs".to_string()]));
    let values = |token: &str, extra: &[(&str, &str)]| -> BTreeSet<String> {
        call(
            &addr,
            "GET",
            "/loki/api/v1/label/namespace/values?since=6h",
            token,
            extra,
        )
        .json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let a_values = values(A_OPERATOR, &[]);
    assert!(
        !a_values.is_empty() && a_values.iter().all(|n| A_NAMESPACES.contains(&n.as_str())),
        "{a_values:?}"
    );
    let hits = call(&addr, "GET", "/v1/logs/search?q=*&limit=200", &jwt_a, &[]).json();
    assert!(hits["total"].as_u64().unwrap() > 0, "{hits}");
    for h in hits["hits"].as_array().unwrap() {
        assert!(
            A_NAMESPACES.contains(&h["namespace"].as_str().unwrap()),
            "{h}"
        );
    }
    // Operators without a tenant see everything; scoped, only spark's.
    let global = values(OPERATOR, &[]);
    assert!(
        global.contains("iomete-system") && global.contains("monitoring"),
        "{global:?}"
    );
    assert_eq!(values(OPERATOR, &[("X-Scope-OrgID", "spark")]), a_values);
    let b_values = values(B_OPERATOR, &[]);
    assert_eq!(b_values, BTreeSet::from(["iomete-system".to_string()]));

    // The console, as spark sees it in a browser.
    browser::run_script(
        "tenant.mjs",
        &format!("http://{addr}"),
        &browser::output_dir(),
        &[
            ("TENANT_TOKEN", A_CONSOLE.to_string()),
            ("TENANT_NAMESPACES", json!(A_NAMESPACES).to_string()),
            ("TENANT_SERVICES", json!(A_SERVICES).to_string()),
            (
                "TENANT_FORBIDDEN",
                json!(
                    forbidden
                        .iter()
                        .filter(|f| !now_spark_s(f))
                        .collect::<Vec<_>>()
                )
                .to_string(),
            ),
        ],
        Duration::from_secs(180),
    );

    // The intake: spark's token sends spark's services' events only, at
    // 5 events/s (a burst of 50).
    let post = |token: &str, services: &[&str]| -> HttpResponse {
        let body: Vec<Value> = services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"event_id": format!("tenant-intake-{}-{i}", uuid_like()), "occurred_at": chrono::Utc::now().to_rfc3339(),
                       "service": s, "action": "test.post", "success": true, "user_id": "intake-tester"})
            })
            .collect();
        let auth = format!("Bearer {token}");
        http(
            &addr,
            "POST",
            "/v1/events",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(serde_json::to_string(&body).unwrap().as_bytes()),
        )
    };
    let mixed = post(A_INTAKE, &["iom-cluster", "iom-core", "typesense"]);
    assert_eq!(mixed.status, 202, "{}", mixed.text());
    let m = mixed.json();
    assert_eq!(m["accepted"], 2, "{m}");
    assert_eq!(m["rejected"][0]["index"], 1, "{m}");
    assert!(
        m["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not one of tenant spark's services"),
        "{m}"
    );
    assert_eq!(post(A_INTAKE, &["iom-core"]).status, 400);
    let burst = post(A_INTAKE, &["iom-cluster"; 48]);
    assert_eq!(burst.status, 202, "{}", burst.text());
    let over = post(A_INTAKE, &["iom-cluster"; 30]);
    assert_eq!(over.status, 429, "{}", over.text());
    assert!(over.header("retry-after").is_some(), "{}", over.headers);
    assert_eq!(
        post("spark-intake-token-000000002", &["iom-cluster"]).status,
        401
    );
    assert_eq!(
        post("platform-intake-token-000001", &["iom-core"]).status,
        202
    );
    let (_, metrics) = common::http_get(&addr, "/metrics");
    assert!(metrics.contains("sluice_collector_intake_tenant_records_total{tenant=\"spark\",outcome=\"throttled\"} 30"), "{metrics}");

    // Per-tenant concurrency: platform may run one query at a time; a
    // second waits for it ([query] queue_timeout_secs, 10 s), then gets a
    // 429 naming the tenant.
    let slow_addr = addr.clone();
    let slow = std::thread::spawn(move || {
        let body =
            json!({"sql": "SELECT count(*) FROM generate_series(1, 20000000000)"}).to_string();
        let auth = format!("Bearer {B_OPERATOR}");
        http_within(
            &slow_addr,
            "POST",
            "/v1/sql",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
            Some(Duration::from_secs(15)),
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    let second = call(
        &addr,
        "GET",
        "/loki/api/v1/labels?since=1h",
        B_OPERATOR,
        &[],
    );
    assert_eq!(second.status, 429, "{}", second.text());
    assert!(
        second.text().contains("none freed within 10 s"),
        "{}",
        second.text()
    );
    assert!(
        second.text().contains("tenant platform"),
        "{}",
        second.text()
    );
    let _ = slow.join();

    // The audit log: refusals, cross-tenant reads, no secrets.
    let audit = std::fs::read_to_string(data_dir.join("audit/audit.jsonl")).unwrap();
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |f: &dyn Fn(&Value) -> bool| events.iter().any(f);
    assert!(has(&|e| e["event"] == "refused"
        && e["path"] == "/api/v1/rules"
        && e["tenant"] == "spark"
        && e["who"] == "spark-ops"
        && e["status"] == 403));
    assert!(has(&|e| e["event"] == "refused"
        && e["status"] == 401
        && e["reason"].as_str().is_some_and(|r| r.contains("expired"))));
    assert!(has(
        &|e| e["event"] == "all_tenants" && e["who"] == "platform-oncall"
    ));
    assert!(has(&|e| e["event"] == "as_tenant" && e["tenant"] == "spark"));
    assert!(has(&|e| e["event"] == "admin"));
    assert!(has(&|e| e["event"] == "refused"
        && e["status"] == 429
        && e["tenant"] == "platform"));
    for secret in [
        A_OPERATOR,
        A_ANALYST,
        A_CONSOLE,
        B_OPERATOR,
        OPERATOR,
        ADMIN,
        jwt_a.as_str(),
    ] {
        assert!(!audit.contains(secret), "the audit log holds a secret");
    }
    let (_, metrics) = common::http_get(&addr, "/metrics");
    assert!(
        metrics
            .contains("sluice_query_tenant_requests_total{tenant=\"spark\",outcome=\"refused\"}"),
        "{metrics}"
    );

    // A change of the file takes effect without a restart: spark gets
    // `monitoring`, platform's token goes.
    std::fs::write(
        &config_path,
        config(
            &jwks,
            "\"spark-jobs\", \"data-*\", \"monitoring\"",
            1,
            false,
        ),
    )
    .unwrap();
    wait_for("the reloaded tenants", Duration::from_secs(30), || {
        values(A_OPERATOR, &[]).contains("monitoring")
    });
    assert_eq!(
        call(&addr, "GET", "/loki/api/v1/labels", B_OPERATOR, &[]).status,
        401
    );
    // A configuration that does not load keeps the one in use.
    std::fs::write(
        &config_path,
        config(
            &jwks,
            "\"spark-jobs\", \"iomete-*\", \"iomete-system\"",
            1,
            false,
        ),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(values(A_OPERATOR, &[]).contains("monitoring"));
    assert!(up.terminate().success());
}

/// A unique enough suffix for event ids of one run.
fn uuid_like() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
