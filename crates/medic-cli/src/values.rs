//! Parsers of flag values that clap cannot check on its own. Each refusal says what the
//! flag accepts; clap prints it as `error: invalid value 'V' for '--flag <X>': ...` and
//! exits 2, before anything is read or written.

/// `--time-scale`: simulated seconds per real second. 0 or NaN would make every wait
/// infinite (the run hangs), and a huge or tiny value overflows the durations derived
/// from it, so the accepted range is bounded on both sides.
pub(crate) fn time_scale(s: &str) -> Result<f64, String> {
    const MIN: f64 = 0.001;
    const MAX: f64 = 1_000_000.0;
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (MIN..=MAX).contains(&x) => Ok(x),
        Ok(_) => Err(format!(
            "the time scale must be a number from {MIN} to {MAX} (simulated seconds per real second), e.g. 600"
        )),
        Err(_) => Err("the time scale must be a number, e.g. 600".to_owned()),
    }
}

/// A count that must be at least 1 (`--max-per-group`): 0 would let no step start and
/// the run would wait forever.
pub(crate) fn at_least_one(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("0 would let no step start; pass 1 or more".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("pass a whole number of 1 or more, e.g. 4".to_owned()),
    }
}

/// `--dsm-timeout`: seconds, above 0 and at most an hour.
pub(crate) fn timeout_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 3600.0 => Ok(x),
        _ => Err("pass a number of seconds above 0 and at most 3600, e.g. 10".to_owned()),
    }
}

/// `--lease`: seconds, at least 1 (a worker renews every third of it; less would be a
/// database round trip every few milliseconds) and at most an hour.
pub(crate) fn lease_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (1.0..=3600.0).contains(&x) => Ok(x),
        _ => Err("pass a number of seconds from 1 to 3600, e.g. 30".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_scales_that_would_hang_or_overflow_are_refused() {
        for bad in ["0", "NaN", "nan", "-5", "inf", "1e300", "1e-9", "", "fast"] {
            assert!(time_scale(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(time_scale("600"), Ok(600.0));
        assert_eq!(time_scale("0.5"), Ok(0.5));
    }

    #[test]
    fn counts_start_at_one() {
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-1").is_err());
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(timeout_secs("0").is_err());
        assert_eq!(timeout_secs("2.5"), Ok(2.5));
    }
}
