//! Deterministic pseudo-randomness: every draw comes from its own generator
//! (`rand`'s ChaCha8, whose output `rand` promises never to change for a seed),
//! seeded by a hash of the fleet's seed and of what is being drawn (host, action,
//! attempt). That makes the numbers independent of the order in which concurrent workers
//! ask for them, and stable across machines and Rust versions (std's hashers promise
//! neither, so the seed's hash is FNV-1a here).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng as _};

/// FNV-1a over the parts (with a separator so `("ab","c")` and `("a","bc")` differ) and `n`:
/// a stable hash, the seed of a draw's generator ([`draw`]) or a fingerprint.
pub(crate) fn mix(seed: u64, parts: &[&[u8]], n: u64) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    }
    for b in n.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// The generator of one draw: a pure function of `seed`, `parts` and `n`.
pub(crate) fn draw(seed: u64, parts: &[&[u8]], n: u64) -> ChaCha8Rng {
    seeded(mix(seed, parts, n))
}

/// A generator for a sequence that only its seed decides (the inventory generator's).
pub(crate) fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A uniform number in `[0, 1)`.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

/// `base * exp(sigma * z)` with `z` standard normal (Box-Muller), clamped to three sigmas
/// so that no draw is absurd: the median is `base`.
pub(crate) fn log_normal(base: f64, sigma: f64, rng: &mut ChaCha8Rng) -> f64 {
    if base <= 0.0 {
        return 0.0;
    }
    // 1 - unit() lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    base * (sigma * z.clamp(-3.0, 3.0)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_separated() {
        assert_ne!(mix(1, &[b"ab", b"c"], 0), mix(1, &[b"a", b"bc"], 0));
        assert_ne!(mix(1, &[b"a"], 0), mix(2, &[b"a"], 0));
        assert_ne!(mix(1, &[b"a"], 0), mix(1, &[b"a"], 1));
    }

    #[test]
    fn a_draw_depends_only_on_what_is_drawn() {
        let a = unit(&mut draw(7, &[b"h", b"agent-upgrade"], 1));
        let b = unit(&mut draw(7, &[b"h", b"agent-upgrade"], 1));
        let c = unit(&mut draw(7, &[b"h", b"agent-upgrade"], 2));
        assert_eq!(a.to_bits(), b.to_bits());
        assert_ne!(a.to_bits(), c.to_bits());
    }

    #[test]
    fn log_normal_stays_near_its_median() {
        let mut below = 0;
        for i in 0..10_000u64 {
            let d = log_normal(600.0, 0.3, &mut draw(7, &[b"h", b"agent-upgrade"], i));
            assert!((600.0 * (-0.9f64).exp()..=600.0 * 0.9f64.exp()).contains(&d));
            if d < 600.0 {
                below += 1;
            }
        }
        // The median is the base: about half of the draws fall below it.
        assert!((4_500..5_500).contains(&below), "{below}");
    }
}
