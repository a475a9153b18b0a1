//! Deterministic pseudo-randomness without state: every draw is a pure function of the
//! seed and of what is being drawn (host, action, attempt). That makes the numbers
//! independent of the order in which concurrent workers ask for them, and stable across
//! machines and Rust versions (std's hashers promise neither).

/// FNV-1a over the parts (with a separator so `("ab","c")` and `("a","bc")` differ),
/// finished with SplitMix64 so nearby inputs give unrelated outputs.
pub(crate) fn mix(seed: u64, parts: &[&[u8]], n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` from the top 53 bits.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `base * exp(sigma * z)` with `z` standard normal (Box-Muller), clamped to three sigmas
/// so that no draw is absurd: the median is `base`.
pub(crate) fn log_normal(base: f64, sigma: f64, x: u64) -> f64 {
    if base <= 0.0 {
        return 0.0;
    }
    // 1 - unit() lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - unit(x);
    let u2 = unit(splitmix(x));
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
    fn log_normal_stays_near_its_median() {
        let mut below = 0;
        for i in 0..10_000u64 {
            let d = log_normal(600.0, 0.3, mix(7, &[b"h", b"agent-upgrade"], i));
            assert!((600.0 * (-0.9f64).exp()..=600.0 * 0.9f64.exp()).contains(&d));
            if d < 600.0 {
                below += 1;
            }
        }
        // The median is the base: about half of the draws fall below it.
        assert!((4_500..5_500).contains(&below), "{below}");
    }
}
