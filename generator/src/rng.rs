//! Deterministic randomness: every independent piece of output draws from its
//! own stream, keyed by (seed, label, index), so pieces can be generated in
//! parallel and in any order and still produce the same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type GenRng = ChaCha8Rng;

pub fn stream(seed: u64, label: &str, index: u64) -> GenRng {
    let key = xxhash_rust::xxh3::xxh3_64_with_seed(
        label.as_bytes(),
        seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    ChaCha8Rng::seed_from_u64(key)
}

/// A random lowercase hex string of `len` characters.
pub fn hex(rng: &mut GenRng, len: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| HEX[rng.random_range(0..16)] as char)
        .collect()
}

/// A random RFC 4122 version-4 UUID in text form.
pub fn uuid(rng: &mut GenRng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Kubernetes-style random suffix characters (no vowels, no confusables).
pub fn kube_suffix(rng: &mut GenRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
