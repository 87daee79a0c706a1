//! OIDC bearer tokens against a real JWKS endpoint: keys made here, tokens
//! signed with `jsonwebtoken::encode`, the JWKS served by an axum server on
//! 127.0.0.1 that the tests change (rotation, outages) while verifying.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sluice_http::jwt::{Claims, JwtConfig, JwtError, JwtVerifier};

const ISSUER: &str = "https://idp.example.test/realms/sluice";
const AUDIENCE: &str = "sluice-query";
/// For the tests that do not rotate: long enough never to interfere.
const NEVER: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- keys

/// A signing key made for the test, with its public JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// The public key as X.509 SubjectPublicKeyInfo DER (what an attacker
    /// might try as an HMAC secret).
    public_der: Vec<u8>,
}

impl TestKey {
    fn rsa(kid: &str, alg: Algorithm) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate RSA key");
        let pkcs8: Pkcs8V1Der<'static> = pair.as_der().expect("RSA PKCS#8");
        // jsonwebtoken wants RSA private keys as PKCS#1.
        let encoding = EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(pkcs8.as_ref()));
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().expect("RSA SPKI");
        Self::finish(kid, alg, encoding, public.as_ref().to_vec())
    }

    fn ec(kid: &str, alg: Algorithm) -> Self {
        let curve = match alg {
            Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            other => panic!("not an EC algorithm: {other:?}"),
        };
        let pair = EcdsaKeyPair::generate(curve).expect("generate EC key");
        let pkcs8 = pair.to_pkcs8v1().expect("EC PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        Self::finish(kid, alg, EncodingKey::from_ec_der(pkcs8.as_ref()), public)
    }

    fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).expect("Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        Self::finish(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            public,
        )
    }

    fn finish(kid: &str, alg: Algorithm, encoding: EncodingKey, public_der: Vec<u8>) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("JWK from key");
        jwk.common.key_id = Some(kid.to_owned());
        let jwk = serde_json::to_value(&jwk).expect("JWK as JSON");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            public_der,
        }
    }

    /// The JWK without its `alg` (many providers publish RSA keys so).
    fn jwk_without_alg(&self) -> Value {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().expect("JWK object").remove("alg");
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, &self.kid, claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        encode(&header, claims, &self.encoding).expect("sign token")
    }
}

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    fn next(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = if input[1] < 0x80 {
            (usize::from(input[1]), 2)
        } else {
            let n = usize::from(input[1] & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, 2 + n)
        };
        (tag, &input[header..header + len], &input[header + len..])
    }
    let (tag, info, _) = next(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (tag, _version, rest) = next(info);
    assert_eq!(tag, 0x02, "version INTEGER");
    let (tag, _algorithm, rest) = next(rest);
    assert_eq!(tag, 0x30, "AlgorithmIdentifier SEQUENCE");
    let (tag, key, _) = next(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    key.to_vec()
}

fn jwks<const N: usize>(keys: [Value; N]) -> Value {
    json!({ "keys": keys.to_vec() })
}

// ---------------------------------------------------------------- tokens

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("seconds fit")
}

/// Claims that pass, for `sub` alice, role admin, tenant acme.
fn good_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 600,
        "sluice_role": "admin",
        "sluice_tenant": "acme",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("claims object").remove(key);
    claims
}

fn expected(exp: &Value) -> Claims {
    Claims {
        subject: Some("alice".to_owned()),
        role: Some("admin".to_owned()),
        tenant: Some("acme".to_owned()),
        expires_at: exp.as_i64().expect("exp"),
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

// ---------------------------------------------------------------- the IdP

/// A JWKS endpoint whose document and status the test changes, counting
/// the fetches.
#[derive(Clone)]
struct Idp {
    state: Arc<Mutex<(StatusCode, Value)>>,
    hits: Arc<AtomicUsize>,
    url: String,
}

impl Idp {
    async fn start(document: Value) -> Self {
        let state = Arc::new(Mutex::new((StatusCode::OK, document)));
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let idp = Self {
            state,
            hits,
            url: format!("http://{addr}/jwks.json"),
        };
        let app = Router::new()
            .route("/jwks.json", get(serve_jwks))
            .with_state(idp.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        idp
    }

    fn publish(&self, document: Value) {
        *self.state.lock().expect("idp state") = (StatusCode::OK, document);
    }

    fn fail_with(&self, status: StatusCode) {
        self.state.lock().expect("idp state").0 = status;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(State(idp): State<Idp>) -> (StatusCode, Json<Value>) {
    idp.hits.fetch_add(1, Ordering::SeqCst);
    let (status, document) = idp.state.lock().expect("idp state").clone();
    if status.is_success() {
        (status, Json(document))
    } else {
        (status, Json(json!({ "error": "down" })))
    }
}

fn config_for(url: &str) -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec!["another-client".to_owned(), AUDIENCE.to_owned()],
        jwks_url: Some(url.to_owned()),
        jwks_file: None,
        leeway_secs: 60,
        refresh_secs: 300,
        role_claim: "sluice_role".to_owned(),
        tenant_claim: "sluice_tenant".to_owned(),
    }
}

async fn start_verifier(idp: &Idp) -> JwtVerifier {
    JwtVerifier::new(config_for(&idp.url))
        .await
        .expect("verifier")
}

/// The error of a token that must be refused; its message must not repeat
/// the token.
async fn refused(verifier: &JwtVerifier, token: &str) -> JwtError {
    match verifier.verify(token).await {
        Ok(claims) => panic!("token accepted: {claims:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                token.len() < 8 || !message.contains(token),
                "message repeats the token: {message}"
            );
            let signature = token.rsplit('.').next().unwrap_or_default();
            assert!(
                signature.len() < 8 || !message.contains(signature),
                "message repeats the signature: {message}"
            );
            e
        }
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn valid_rs256_and_es256_tokens_give_their_claims() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let ec = TestKey::ec("ec-1", Algorithm::ES256);
    let idp = Idp::start(jwks([rsa.jwk.clone(), ec.jwk.clone()])).await;
    let verifier = start_verifier(&idp).await;

    for key in [&rsa, &ec] {
        let claims = good_claims();
        let token = key.sign(&claims);
        assert!(JwtVerifier::looks_like_jwt(&token));
        assert_eq!(
            verifier.verify(&token).await,
            Ok(expected(&claims["exp"])),
            "{}",
            key.kid
        );
    }

    // `aud` as an array naming one of ours; no `sub`, no role, no tenant.
    let claims = json!({ "iss": ISSUER, "aud": ["someone-else", AUDIENCE], "exp": now() + 60 });
    assert_eq!(
        verifier.verify(&rsa.sign(&claims)).await,
        Ok(Claims {
            subject: None,
            role: None,
            tenant: None,
            expires_at: claims["exp"].as_i64().expect("exp")
        })
    );
    assert_eq!(idp.hits(), 1, "known keys need no fetch");
}

#[tokio::test]
async fn other_algorithms_as_the_jwk_allows() {
    // An RSA JWK without `alg` allows the RSA family (RS*, PS*); EC keys
    // their curve's algorithm; Ed25519 EdDSA.
    let rsa = TestKey::rsa("rsa-any", Algorithm::RS256);
    let rsa_pinned = TestKey::rsa("rsa-rs512", Algorithm::RS512);
    let p384 = TestKey::ec("ec-384", Algorithm::ES384);
    let ed = TestKey::ed25519("ed-1");
    let idp = Idp::start(jwks([
        rsa.jwk_without_alg(),
        rsa_pinned.jwk.clone(),
        p384.jwk.clone(),
        ed.jwk.clone(),
    ]))
    .await;
    let verifier = start_verifier(&idp).await;

    let claims = good_claims();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::PS256,
        Algorithm::PS512,
    ] {
        let token = rsa.sign_as(alg, "rsa-any", &claims);
        assert_eq!(
            verifier.verify(&token).await,
            Ok(expected(&claims["exp"])),
            "{alg:?}"
        );
    }
    assert_eq!(
        verifier.verify(&rsa_pinned.sign(&claims)).await,
        Ok(expected(&claims["exp"]))
    );
    assert_eq!(
        verifier.verify(&p384.sign(&claims)).await,
        Ok(expected(&claims["exp"]))
    );
    assert_eq!(
        verifier.verify(&ed.sign(&claims)).await,
        Ok(expected(&claims["exp"]))
    );

    // A JWK whose `alg` is RS512 does not verify RS256, even with its own key.
    let token = rsa_pinned.sign_as(Algorithm::RS256, "rsa-rs512", &claims);
    assert_eq!(
        refused(&verifier, &token).await,
        JwtError::AlgorithmMismatch
    );
    // An EC key does not verify an RSA algorithm (nor the other curve's).
    let token = rsa.sign_as(Algorithm::RS256, "ec-384", &claims);
    assert_eq!(
        refused(&verifier, &token).await,
        JwtError::AlgorithmMismatch
    );
    let p256 = TestKey::ec("ec-384", Algorithm::ES256);
    assert_eq!(
        refused(&verifier, &p256.sign(&claims)).await,
        JwtError::AlgorithmMismatch
    );
}

#[tokio::test]
async fn expiry_and_not_before_with_leeway() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let idp = Idp::start(jwks([rsa.jwk.clone()])).await;
    let verifier = start_verifier(&idp).await; // leeway 60 s

    let expired = with(good_claims(), "exp", json!(now() - 120));
    assert_eq!(
        refused(&verifier, &rsa.sign(&expired)).await,
        JwtError::Expired
    );
    assert_eq!(JwtError::Expired.to_string(), "token expired");

    let just_expired = with(good_claims(), "exp", json!(now() - 30));
    assert_eq!(
        verifier.verify(&rsa.sign(&just_expired)).await,
        Ok(expected(&just_expired["exp"])),
        "30 s past exp is within the 60 s leeway"
    );

    let early = with(good_claims(), "nbf", json!(now() + 120));
    assert_eq!(
        refused(&verifier, &rsa.sign(&early)).await,
        JwtError::NotYetValid
    );
    let nearly = with(good_claims(), "nbf", json!(now() + 30));
    assert!(verifier.verify(&rsa.sign(&nearly)).await.is_ok());

    let no_exp = without(good_claims(), "exp");
    assert_eq!(
        refused(&verifier, &rsa.sign(&no_exp)).await,
        JwtError::MissingClaim("exp".to_owned())
    );
    let text_exp = with(good_claims(), "exp", json!("tomorrow"));
    assert!(matches!(
        refused(&verifier, &rsa.sign(&text_exp)).await,
        JwtError::InvalidClaim(_) | JwtError::MissingClaim(_)
    ));

    // A smaller leeway makes the same token fail.
    let mut strict = config_for(&idp.url);
    strict.leeway_secs = 5;
    let strict = JwtVerifier::new(strict).await.expect("verifier");
    assert_eq!(
        refused(&strict, &rsa.sign(&just_expired)).await,
        JwtError::Expired
    );
}

#[tokio::test]
async fn wrong_issuer_and_audience_refused() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let idp = Idp::start(jwks([rsa.jwk.clone()])).await;
    let verifier = start_verifier(&idp).await;

    let other_issuer = with(good_claims(), "iss", json!("https://evil.example.test"));
    assert_eq!(
        refused(&verifier, &rsa.sign(&other_issuer)).await,
        JwtError::WrongIssuer
    );
    let no_issuer = without(good_claims(), "iss");
    assert_eq!(
        refused(&verifier, &rsa.sign(&no_issuer)).await,
        JwtError::MissingClaim("iss".to_owned())
    );

    let other_audience = with(good_claims(), "aud", json!("grafana"));
    assert_eq!(
        refused(&verifier, &rsa.sign(&other_audience)).await,
        JwtError::WrongAudience
    );
    let other_audiences = with(good_claims(), "aud", json!(["grafana", "argo"]));
    assert_eq!(
        refused(&verifier, &rsa.sign(&other_audiences)).await,
        JwtError::WrongAudience
    );
    let no_audience = without(good_claims(), "aud");
    assert_eq!(
        refused(&verifier, &rsa.sign(&no_audience)).await,
        JwtError::MissingClaim("aud".to_owned())
    );
    assert_eq!(JwtError::WrongIssuer.to_string(), "wrong issuer");
    assert_eq!(JwtError::WrongAudience.to_string(), "wrong audience");
}

#[tokio::test]
async fn keys_not_published_are_refused() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let idp = Idp::start(jwks([rsa.jwk.clone()])).await;
    let verifier = start_verifier(&idp).await;
    let stranger = TestKey::rsa("stranger", Algorithm::RS256);

    // Signed by another key under a published kid: the signature fails.
    let token = stranger.sign_as(Algorithm::RS256, "rsa-1", &good_claims());
    assert_eq!(refused(&verifier, &token).await, JwtError::InvalidSignature);

    // Under its own kid: unknown, and the message names the kid.
    let e = refused(&verifier, &stranger.sign(&good_claims())).await;
    assert_eq!(
        e,
        JwtError::UnknownKey {
            kid: Some("stranger".to_owned())
        }
    );
    assert_eq!(e.to_string(), "unknown signing key (kid \"stranger\")");

    // A published key's token with its payload changed.
    let token = rsa.sign(&good_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(&with(good_claims(), "sluice_role", json!("root")).to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        refused(&verifier, &tampered).await,
        JwtError::InvalidSignature
    );

    // No kid while the JWKS has several keys: no guessing.
    let two = Idp::start(jwks([rsa.jwk.clone(), stranger.jwk.clone()])).await;
    let verifier_two = start_verifier(&two).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let no_kid = encode(&header, &good_claims(), &rsa.encoding).expect("sign");
    assert_eq!(
        refused(&verifier_two, &no_kid).await,
        JwtError::UnknownKey { kid: None }
    );
    // With one key only, a token without kid is checked against it.
    assert!(verifier.verify(&no_kid).await.is_ok());
}

#[tokio::test]
async fn alg_none_and_hmac_forgeries_refused() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let ec = TestKey::ec("ec-1", Algorithm::ES256);
    let idp = Idp::start(jwks([rsa.jwk.clone(), ec.jwk.clone()])).await;
    let verifier = start_verifier(&idp).await;
    let payload = b64(&good_claims().to_string());

    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({ "alg": alg, "typ": "JWT", "kid": "rsa-1" }).to_string());
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(
            refused(&verifier, &unsigned).await,
            JwtError::UnsupportedAlgorithm,
            "{alg}"
        );
        let with_garbage = format!("{header}.{payload}.c2lnbmF0dXJl");
        assert_eq!(
            refused(&verifier, &with_garbage).await,
            JwtError::UnsupportedAlgorithm
        );
    }

    // HS256 "signed" with what is public about the keys: the JWK's JSON,
    // the SPKI DER, the RSA modulus.
    let modulus = URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().expect("n"))
        .expect("modulus");
    let secrets: Vec<Vec<u8>> = vec![
        rsa.jwk.to_string().into_bytes(),
        rsa.public_der.clone(),
        modulus,
        ec.public_der.clone(),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        for (hmac, kid) in [(Algorithm::HS256, "rsa-1"), (Algorithm::HS512, "ec-1")] {
            let mut header = Header::new(hmac);
            header.kid = Some(kid.to_owned());
            let key = EncodingKey::from_secret(secret).expect("HMAC key");
            let forged = encode(&header, &good_claims(), &key).expect("sign HMAC");
            assert_eq!(
                refused(&verifier, &forged).await,
                JwtError::UnsupportedAlgorithm,
                "secret {i} as {hmac:?}"
            );
        }
    }

    // An `oct` key in the JWKS is never used, not even for its own kid.
    let secret = b"a-shared-secret-that-is-now-public";
    let oct = json!({ "kty": "oct", "kid": "hmac-1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(secret) });
    idp.publish(jwks([rsa.jwk.clone(), oct]));
    let with_oct = start_verifier(&idp).await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac-1".to_owned());
    let forged = encode(
        &header,
        &good_claims(),
        &EncodingKey::from_secret(secret).expect("key"),
    )
    .expect("sign");
    assert_eq!(
        refused(&with_oct, &forged).await,
        JwtError::UnsupportedAlgorithm
    );

    // Garbage.
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.eyJ9.c2ln",
        "eyJhbGciOiJSUzI1NiJ9..c2ln",
    ] {
        assert_eq!(
            refused(&verifier, junk).await,
            JwtError::Malformed,
            "{junk:?}"
        );
    }
    let not_json = format!("{}.{payload}.c2ln", b64("not json"));
    assert_eq!(refused(&verifier, &not_json).await, JwtError::Malformed);
    let huge = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","kid":"rsa-1"}"#),
        "A".repeat(20_000)
    );
    assert_eq!(refused(&verifier, &huge).await, JwtError::Malformed);
}

#[tokio::test]
async fn role_and_tenant_from_configured_claims() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    let idp = Idp::start(jwks([rsa.jwk.clone()])).await;
    let mut config = config_for(&idp.url);
    config.role_claim = "groups".to_owned();
    config.tenant_claim = "org".to_owned();
    let verifier = JwtVerifier::new(config).await.expect("verifier");

    let claims = with(
        with(good_claims(), "groups", json!(["operators", "admins"])),
        "org",
        json!("team-a"),
    );
    let got = verifier.verify(&rsa.sign(&claims)).await.expect("valid");
    assert_eq!(got.role.as_deref(), Some("operators"), "first of the array");
    assert_eq!(got.tenant.as_deref(), Some("team-a"));
    assert_eq!(got.subject.as_deref(), Some("alice"));

    // The default claim names are not read any more.
    let defaults_only = good_claims();
    let got = verifier
        .verify(&rsa.sign(&defaults_only))
        .await
        .expect("valid");
    assert_eq!((got.role, got.tenant), (None, None));

    let single = with(good_claims(), "groups", json!("viewer"));
    let got = verifier.verify(&rsa.sign(&single)).await.expect("valid");
    assert_eq!(got.role.as_deref(), Some("viewer"));

    let empty = with(good_claims(), "groups", json!([]));
    assert_eq!(
        verifier
            .verify(&rsa.sign(&empty))
            .await
            .expect("valid")
            .role,
        None
    );

    for bad in [json!(7), json!(["ok", 7]), json!({"name": "admin"})] {
        let claims = with(good_claims(), "groups", bad.clone());
        assert_eq!(
            refused(&verifier, &rsa.sign(&claims)).await,
            JwtError::InvalidClaim("groups".to_owned()),
            "{bad}"
        );
    }
    let tenant_array = with(good_claims(), "org", json!(["a", "b"]));
    assert_eq!(
        refused(&verifier, &rsa.sign(&tenant_array)).await,
        JwtError::InvalidClaim("org".to_owned())
    );
}

#[tokio::test]
async fn rotation_fetches_on_unknown_kid_at_most_once_per_interval() {
    let old = TestKey::rsa("2026-old", Algorithm::RS256);
    let new = TestKey::ec("2026-new", Algorithm::ES256);
    let idp = Idp::start(jwks([old.jwk.clone()])).await;
    let interval = Duration::from_millis(500);
    let verifier = JwtVerifier::with_timing(config_for(&idp.url), NEVER, interval)
        .await
        .expect("verifier");
    assert_eq!(idp.hits(), 1, "loaded once at start");

    let new_token = new.sign(&good_claims());
    let old_token = old.sign(&good_claims());

    // Right after the start fetch: too soon to fetch again.
    assert!(matches!(
        refused(&verifier, &new_token).await,
        JwtError::UnknownKey { .. }
    ));
    assert_eq!(idp.hits(), 1, "no fetch within the interval");

    // After the interval, the unknown kid makes one fetch; the IdP still
    // publishes only the old key, so the token is still refused.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let e = refused(&verifier, &new_token).await;
    assert_eq!(
        e,
        JwtError::UnknownKey {
            kid: Some("2026-new".to_owned())
        }
    );
    assert_eq!(idp.hits(), 2, "one fetch for the unknown kid");

    // Many more garbage kids right away: no more fetches.
    for i in 0..20 {
        let garbage = old.sign_as(Algorithm::RS256, &format!("garbage-{i}"), &good_claims());
        assert!(matches!(
            refused(&verifier, &garbage).await,
            JwtError::UnknownKey { .. }
        ));
    }
    assert_eq!(idp.hits(), 2, "rate limited");

    // The IdP rotates the new key in; still within the interval, so the
    // token is refused without a fetch...
    idp.publish(jwks([old.jwk.clone(), new.jwk.clone()]));
    assert!(matches!(
        refused(&verifier, &new_token).await,
        JwtError::UnknownKey { .. }
    ));
    assert_eq!(idp.hits(), 2);

    // ...and accepted once the interval has passed, through one fetch.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let claims = verifier
        .verify(&new_token)
        .await
        .expect("new key accepted after rotation");
    assert_eq!(claims.subject.as_deref(), Some("alice"));
    assert_eq!(idp.hits(), 3);
    assert!(
        verifier.verify(&old_token).await.is_ok(),
        "old key still published"
    );
    assert!(verifier.verify(&new_token).await.is_ok());
    assert_eq!(idp.hits(), 3, "known kids fetch nothing");

    // Concurrent requests with another unknown kid share one fetch.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let clones: Vec<_> = (0..8).map(|_| verifier.clone()).collect();
    let unknown = old.sign_as(Algorithm::RS256, "nobody", &good_claims());
    let results = verify_concurrently(clones, &unknown).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(JwtError::UnknownKey { .. })))
    );
    assert_eq!(idp.hits(), 4, "one fetch for eight concurrent requests");
}

async fn verify_concurrently(
    verifiers: Vec<JwtVerifier>,
    token: &str,
) -> Vec<Result<Claims, JwtError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for v in verifiers {
        let token = token.to_owned();
        tasks.spawn(async move { v.verify(&token).await });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task"));
    }
    out
}

#[tokio::test]
async fn failed_fetch_keeps_the_last_good_keys() {
    let old = TestKey::rsa("old", Algorithm::RS256);
    let new = TestKey::rsa("new", Algorithm::RS256);
    let idp = Idp::start(jwks([old.jwk.clone()])).await;
    let interval = Duration::from_millis(300);
    let verifier = JwtVerifier::with_timing(config_for(&idp.url), NEVER, interval)
        .await
        .expect("verifier");

    idp.fail_with(StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    let e = refused(&verifier, &new.sign(&good_claims())).await;
    assert!(matches!(e, JwtError::JwksUnavailable(_)), "{e:?}");
    assert!(e.to_string().starts_with("JWKS unavailable: "));
    assert!(
        !e.to_string().contains("127.0.0.1"),
        "no internal address in a 401 body"
    );
    assert_eq!(idp.hits(), 2);
    assert!(
        verifier.verify(&old.sign(&good_claims())).await.is_ok(),
        "old keys kept"
    );

    // A document without usable keys does not replace the good set either.
    idp.publish(jwks([json!({ "kty": "oct", "kid": "x", "k": "c2VjcmV0" })]));
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(matches!(
        refused(&verifier, &new.sign(&good_claims())).await,
        JwtError::JwksUnavailable(_)
    ));
    assert!(
        verifier.verify(&old.sign(&good_claims())).await.is_ok(),
        "old keys kept"
    );

    // Back up, with the new key.
    idp.publish(jwks([old.jwk.clone(), new.jwk.clone()]));
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(verifier.verify(&new.sign(&good_claims())).await.is_ok());
}

#[tokio::test]
async fn background_refresh_follows_rotation() {
    let old = TestKey::rsa("old", Algorithm::RS256);
    let new = TestKey::ec("new", Algorithm::ES256);
    let idp = Idp::start(jwks([old.jwk.clone()])).await;
    // Refresh every 200 ms; unknown kids never trigger a fetch here.
    let verifier =
        JwtVerifier::with_timing(config_for(&idp.url), Duration::from_millis(200), NEVER)
            .await
            .expect("verifier");
    let new_token = new.sign(&good_claims());
    let old_token = old.sign(&good_claims());
    assert!(matches!(
        refused(&verifier, &new_token).await,
        JwtError::UnknownKey { .. }
    ));

    // The IdP swaps the old key for the new one: the background refresh
    // picks both changes up, with no token asking for it.
    idp.publish(jwks([new.jwk.clone()]));
    let hits = idp.hits();
    wait_for(|| idp.hits() >= hits + 2).await;
    assert!(verifier.verify(&new_token).await.is_ok(), "rotated in");
    assert!(
        matches!(
            refused(&verifier, &old_token).await,
            JwtError::UnknownKey { .. }
        ),
        "rotated out"
    );

    // A failing refresh keeps the keys.
    idp.fail_with(StatusCode::INTERNAL_SERVER_ERROR);
    let hits = idp.hits();
    wait_for(|| idp.hits() >= hits + 2).await;
    assert!(verifier.verify(&new_token).await.is_ok());

    // The refresh stops with the last verifier.
    let clone = verifier.clone();
    drop(verifier);
    let hits = idp.hits();
    wait_for(|| idp.hits() > hits).await;
    drop(clone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = idp.hits();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(idp.hits(), hits, "no fetches after the verifier is gone");
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn jwks_from_a_file() {
    let rsa = TestKey::rsa("file-rsa", Algorithm::RS256);
    let ec = TestKey::ec("file-ec", Algorithm::ES256);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks([rsa.jwk.clone()]).to_string()).expect("write JWKS");

    let mut config = config_for("unused");
    config.jwks_url = None;
    config.jwks_file = Some(path.display().to_string());
    let interval = Duration::from_millis(200);
    let verifier = JwtVerifier::with_timing(config.clone(), NEVER, interval)
        .await
        .expect("verifier from file");
    let claims = good_claims();
    assert_eq!(
        verifier.verify(&rsa.sign(&claims)).await,
        Ok(expected(&claims["exp"]))
    );

    // The file is read again for an unknown kid, too.
    std::fs::write(&path, jwks([rsa.jwk.clone(), ec.jwk.clone()]).to_string()).expect("write");
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    assert!(verifier.verify(&ec.sign(&claims)).await.is_ok());

    // A missing file is a startup error naming it.
    config.jwks_file = Some(dir.path().join("missing.json").display().to_string());
    let e = JwtVerifier::new(config).await.expect_err("missing file");
    assert!(e.contains("missing.json"), "{e}");
}

#[tokio::test]
async fn startup_errors_name_the_source() {
    let idp = Idp::start(json!({ "not": "a jwks" })).await;
    let e = JwtVerifier::new(config_for(&idp.url))
        .await
        .expect_err("not a JWKS");
    assert!(
        e.contains(&idp.url) && e.contains("not a JWKS document"),
        "{e}"
    );

    idp.publish(jwks([json!({ "kty": "oct", "kid": "h", "k": "c2VjcmV0" })]));
    let e = JwtVerifier::new(config_for(&idp.url))
        .await
        .expect_err("only oct");
    assert!(
        e.contains(&idp.url) && e.contains("no usable signing key"),
        "{e}"
    );

    idp.publish(jwks([]));
    let e = JwtVerifier::new(config_for(&idp.url))
        .await
        .expect_err("empty");
    assert!(e.contains("no keys"), "{e}");

    idp.fail_with(StatusCode::NOT_FOUND);
    let e = JwtVerifier::new(config_for(&idp.url))
        .await
        .expect_err("404");
    assert!(e.contains(&idp.url) && e.contains("404"), "{e}");

    // Nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    drop(listener);
    let e = JwtVerifier::new(config_for(&dead))
        .await
        .expect_err("refused");
    assert!(e.contains(&dead), "{e}");

    // Invalid configuration is refused before any fetch.
    let hits = idp.hits();
    let mut bad = config_for(&idp.url);
    bad.audiences.clear();
    let e = JwtVerifier::new(bad).await.expect_err("no audiences");
    assert!(e.contains("audiences"), "{e}");
    assert_eq!(idp.hits(), hits);
}

#[test]
fn config_defaults_and_validation() {
    let parsed: JwtConfig = serde_json::from_value(json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks_url": "https://idp.example.test/jwks",
    }))
    .expect("minimal config");
    assert_eq!(parsed.leeway_secs, 60);
    assert_eq!(parsed.refresh_secs, 300);
    assert_eq!(parsed.role_claim, "sluice_role");
    assert_eq!(parsed.tenant_claim, "sluice_tenant");
    assert_eq!(parsed.jwks_file, None);
    assert_eq!(parsed.validate(), Ok(()));

    let unknown = serde_json::from_value::<JwtConfig>(json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks_url": "https://idp.example.test/jwks",
        "audience": "typo",
    }));
    assert!(unknown.is_err(), "unknown fields are refused");

    let ok = config_for("https://idp.example.test/jwks");
    assert_eq!(ok.validate(), Ok(()));
    type Edit = fn(&mut JwtConfig);
    let cases: &[(Edit, &str)] = &[
        (|c| c.issuer = " ".into(), "issuer"),
        (|c| c.audiences.clear(), "audiences"),
        (|c| c.audiences.push(String::new()), "audiences"),
        (|c| c.jwks_file = Some("/etc/jwks.json".into()), "not both"),
        (|c| c.jwks_url = None, "jwks_url or jwks_file"),
        (
            |c| c.jwks_url = Some("ftp://idp.example.test/jwks".into()),
            "http:// or https://",
        ),
        (|c| c.jwks_url = Some("not a url".into()), "not a URL"),
        (
            |c| {
                c.jwks_url = None;
                c.jwks_file = Some(String::new());
            },
            "jwks_file",
        ),
        (|c| c.leeway_secs = 3600, "leeway_secs"),
        (|c| c.refresh_secs = 0, "refresh_secs"),
        (|c| c.role_claim = String::new(), "role_claim"),
        (|c| c.tenant_claim = " ".into(), "tenant_claim"),
    ];
    for (edit, expected) in cases {
        let mut config = ok.clone();
        edit(&mut config);
        let e = config.validate().expect_err(expected);
        assert!(e.starts_with("[query.jwt] ") && e.contains(expected), "{e}");
    }
}

#[test]
fn verifier_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<JwtVerifier>();
    shareable::<JwtError>();
}

#[test]
fn jwt_shape_check() {
    let rsa = TestKey::rsa("rsa-1", Algorithm::RS256);
    assert!(JwtVerifier::looks_like_jwt(&rsa.sign(&good_claims())));
    assert!(!JwtVerifier::looks_like_jwt(
        "sluice-static-token-0123456789abcdef"
    ));
    assert!(!JwtVerifier::looks_like_jwt("a.b.c"));
    assert!(!JwtVerifier::looks_like_jwt(""));
}
