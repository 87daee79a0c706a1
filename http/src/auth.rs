//! The bearer-token check every endpoint uses: `Authorization: Bearer …`
//! (scheme case-insensitive), compared in constant time.

use axum::http::{HeaderMap, header};

/// The token of `Authorization: Bearer <token>`, trimmed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in time independent of where the first difference is, so a
/// token cannot be guessed byte by byte from response times.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The configured token `headers` present, if any (every candidate is
/// compared, whichever matches).
pub fn find<'a, T>(
    headers: &HeaderMap,
    tokens: &'a [T],
    secret: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    find_index(headers, tokens, secret).map(|i| &tokens[i])
}

/// [`find`], as the token's place in `tokens`.
pub fn find_index<T>(
    headers: &HeaderMap,
    tokens: &[T],
    secret: impl Fn(&T) -> &str,
) -> Option<usize> {
    let presented = bearer(headers)?;
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        if same_secret(secret(t).as_bytes(), presented.as_bytes()) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
        let tokens = ["first-token", "second-token"];
        assert_eq!(
            find(&headers("Bearer second-token"), &tokens, |t| t),
            Some(&"second-token")
        );
        assert_eq!(find(&headers("Bearer second"), &tokens, |t| t), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
