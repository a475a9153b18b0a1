//! Faults the simulator server injects at the HTTP level, so that clients are tested
//! against what real Managers do under load or misconfiguration: throttling (429 "Too many
//! API requests", no `Retry-After`), server errors, slow answers and a certificate issued
//! for another name.
//!
//! Two kinds of 429 storm: by request count (`429-storm`: exactly N requests are refused,
//! whenever they come, which makes a client's request counts testable) and by time
//! (`429-for`: every request is refused for a while, as a Manager over its per-minute API
//! limit does, which is what a client's backoff is made for).

use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One injected fault. Request numbers count every request the server receives under
/// `/api` (and any path that is not a simulator-only `/sim` route), from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpFault {
    /// Requests `after + 1 ..= after + count` are answered 429 `{"message": "Too many API
    /// requests"}` without being processed.
    TooManyRequests { count: u32, after: u32 },
    /// From request `after + 1` on, every request is answered 429 for `duration`.
    TooManyRequestsFor { duration: Duration, after: u32 },
    /// Requests `after + 1 ..= after + count` are answered 500 without being processed.
    ServerError { count: u32, after: u32 },
    /// Every answer is delayed.
    Latency(Duration),
    /// The TLS certificate names another host (`wrong-host.invalid`), issued by the same CA:
    /// a client that checks names must refuse it.
    WrongCertificate,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "bad fault `{0}`: use 429-storm[=N[@AFTER]], 429-for=MS[@AFTER], 5xx[=N[@AFTER]], latency=MS or wrong-cert"
)]
pub struct ParseFaultError(String);

/// How many requests a storm answers when no count is given.
const DEFAULT_BURST: u32 = 20;

fn burst(spec: &str, rest: Option<&str>) -> Result<(u32, u32), ParseFaultError> {
    let bad = || ParseFaultError(spec.to_owned());
    let Some(rest) = rest else {
        return Ok((DEFAULT_BURST, 0));
    };
    let (count, after) = match rest.split_once('@') {
        Some((c, a)) => (c, Some(a)),
        None => (rest, None),
    };
    let count = count.parse().map_err(|_| bad())?;
    let after = match after {
        Some(a) => a.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok((count, after))
}

impl FromStr for HttpFault {
    type Err = ParseFaultError;

    /// `429-storm[=N[@AFTER]]` (default 20 requests from the first), `429-for=MS[@AFTER]`
    /// (every request for MS milliseconds, from request AFTER + 1), `5xx[=N[@AFTER]]`,
    /// `latency=MS`, `wrong-cert`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        };
        match name {
            "429-storm" => {
                let (count, after) = burst(s, rest)?;
                Ok(HttpFault::TooManyRequests { count, after })
            }
            "429-for" => {
                let (ms, after) =
                    burst(s, Some(rest.ok_or_else(|| ParseFaultError(s.to_owned()))?))?;
                Ok(HttpFault::TooManyRequestsFor {
                    duration: Duration::from_millis(u64::from(ms)),
                    after,
                })
            }
            "5xx" => {
                let (count, after) = burst(s, rest)?;
                Ok(HttpFault::ServerError { count, after })
            }
            "latency" => {
                let ms: u64 = rest
                    .and_then(|r| r.parse().ok())
                    .ok_or_else(|| ParseFaultError(s.to_owned()))?;
                Ok(HttpFault::Latency(Duration::from_millis(ms)))
            }
            "wrong-cert" if rest.is_none() => Ok(HttpFault::WrongCertificate),
            _ => Err(ParseFaultError(s.to_owned())),
        }
    }
}

/// What a request meets before it is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    TooMany,
    ServerError,
}

#[derive(Debug)]
pub(crate) struct FaultState {
    seen: AtomicU64,
    latency: Duration,
    /// (what, after, until): requests `after + 1 ..= until` get `what`.
    bursts: Vec<(Verdict, u64, u64)>,
    /// (after, how long, when request `after + 1` came): timed 429 storms.
    timed: Vec<(u64, Duration, OnceLock<Instant>)>,
}

impl FaultState {
    pub(crate) fn new(faults: &[HttpFault]) -> FaultState {
        let mut latency = Duration::ZERO;
        let mut bursts = Vec::new();
        let mut timed = Vec::new();
        for f in faults {
            match f {
                HttpFault::TooManyRequests { count, after } => bursts.push((
                    Verdict::TooMany,
                    u64::from(*after),
                    u64::from(*after) + u64::from(*count),
                )),
                HttpFault::ServerError { count, after } => bursts.push((
                    Verdict::ServerError,
                    u64::from(*after),
                    u64::from(*after) + u64::from(*count),
                )),
                HttpFault::TooManyRequestsFor { duration, after } => {
                    timed.push((u64::from(*after), *duration, OnceLock::new()));
                }
                HttpFault::Latency(d) => latency += *d,
                HttpFault::WrongCertificate => {}
            }
        }
        FaultState {
            seen: AtomicU64::new(0),
            latency,
            bursts,
            timed,
        }
    }

    pub(crate) fn latency(&self) -> Duration {
        self.latency
    }

    /// Numbers the request and decides whether a burst catches it.
    pub(crate) fn next(&self) -> Verdict {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        for (kind, after, until) in &self.bursts {
            if n > *after && n <= *until {
                return *kind;
            }
        }
        for (after, duration, started) in &self.timed {
            if n > *after && started.get_or_init(Instant::now).elapsed() < *duration {
                return Verdict::TooMany;
            }
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_forms() {
        assert_eq!(
            "429-storm".parse::<HttpFault>().ok(),
            Some(HttpFault::TooManyRequests {
                count: 20,
                after: 0
            })
        );
        assert_eq!(
            "429-storm=50@3".parse::<HttpFault>().ok(),
            Some(HttpFault::TooManyRequests {
                count: 50,
                after: 3
            })
        );
        assert_eq!(
            "5xx=2".parse::<HttpFault>().ok(),
            Some(HttpFault::ServerError { count: 2, after: 0 })
        );
        assert_eq!(
            "latency=250".parse::<HttpFault>().ok(),
            Some(HttpFault::Latency(Duration::from_millis(250)))
        );
        assert_eq!(
            "wrong-cert".parse::<HttpFault>().ok(),
            Some(HttpFault::WrongCertificate)
        );
        assert_eq!(
            "429-for=1500@7".parse::<HttpFault>().ok(),
            Some(HttpFault::TooManyRequestsFor {
                duration: Duration::from_millis(1500),
                after: 7
            })
        );
        for bad in [
            "latency",
            "429-storm=x",
            "429-for",
            "5xx=1@",
            "teapot",
            "wrong-cert=1",
        ] {
            assert!(bad.parse::<HttpFault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bursts_catch_their_window_of_requests() {
        let s = FaultState::new(&[HttpFault::TooManyRequests { count: 2, after: 1 }]);
        let got: Vec<bool> = (0..5)
            .map(|_| matches!(s.next(), Verdict::TooMany))
            .collect();
        assert_eq!(got, [false, true, true, false, false]);
    }

    #[test]
    fn a_timed_storm_refuses_everything_for_its_duration_then_nothing() {
        let s = FaultState::new(&[HttpFault::TooManyRequestsFor {
            duration: Duration::from_millis(200),
            after: 2,
        }]);
        let got: Vec<bool> = (0..6)
            .map(|_| matches!(s.next(), Verdict::TooMany))
            .collect();
        assert_eq!(got, [false, false, true, true, true, true]);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(s.next(), Verdict::Pass);
    }
}
