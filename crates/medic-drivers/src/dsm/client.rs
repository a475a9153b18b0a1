//! The Manager REST API client: configuration, the API key, TLS, timeouts, retries with
//! backoff, the shared rate limit and the Manager build from `X-DSM-Version`.
//!
//! Retries: a 429 ("Too many API requests": the Manager processed nothing) and 500, 502,
//! 503, 504 are retried with exponential backoff (with jitter, capped), and a 429 pauses
//! every caller of the client. A request that never reached the Manager (connection
//! refused or reset before sending) is retried too. A read timeout is retried only for
//! requests that change nothing (GET, searches): a task creation that timed out may have
//! been processed, and the executor's check probe decides what to do. A retried 5xx on a
//! task creation may start a second security update, which is harmless (it checks for
//! updates again).
//!
//! The API key never reaches an error message, a log line or `Debug` output: it is a
//! [`SecretString`], sent in a header marked sensitive, and any echo of it by a server is
//! redacted from the messages built here.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medic_model::ManagerBuild;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Certificate, Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value as J, json};

use super::limit::TokenBucket;
use super::model::{Computer, ComputerGroup, ComputerGroups, Computers, ScheduledTask};

/// The environment variable that holds the API key.
pub const API_KEY_ENV: &str = "MEDIC_DSM_API_KEY";

/// The advisory's system setting: Agents may download directly when no Relay answers.
pub const DIRECT_DOWNLOAD_SETTING: &str =
    "platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled";

/// The expansions of the driver's poll: enough for every reading it answers.
const POLL_EXPAND: [&str; 4] = ["computerStatus", "securityUpdates", "antiMalware", "tasks"];

/// Why a call to the Manager failed. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum DsmError {
    #[error("invalid manager URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("no API key for the manager: set {API_KEY_ENV} or give a key file")]
    NoApiKey,
    #[error("cannot read the API key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key {0} is empty")]
    EmptyKey(String),
    #[error("the CA bundle is not usable: {0}")]
    CaBundle(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error(
        "the manager at {url} refused the API key (HTTP {status}: {message}): check {API_KEY_ENV} or the key file, and that the key is active"
    )]
    Forbidden {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url}: HTTP {status}: {message}")]
    Http {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{method} {url}: still HTTP {status} after {attempts} attempts: {message}")]
    GaveUp {
        method: String,
        url: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error(
        "the TLS certificate of {url} was refused ({detail}): TLS verification stays on; if the manager uses a private CA, give its certificate (PEM) as the CA bundle (--dsm-ca FILE)"
    )]
    Tls { url: String, detail: String },
    #[error("cannot reach the manager at {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error(
        "the connection to {url} broke after the request was sent ({detail}): the manager may have acted on it"
    )]
    Interrupted { url: String, detail: String },
    #[error("{method} {url}: unexpected answer: {detail}")]
    Decode {
        method: String,
        url: String,
        detail: String,
    },
    #[error("the manager sent no usable X-DSM-Version header (got {0:?})")]
    NoVersion(Option<String>),
    #[error("no computer with hostName `{0}` on the manager")]
    UnknownComputer(String),
    #[error(
        "{count} computers have hostName `{name}` on the manager (IDs {ids}): cannot tell which one is meant"
    )]
    AmbiguousComputer {
        name: String,
        count: usize,
        ids: String,
    },
    #[error("the manager does not page computers by ID (idTest): page after ID {0} repeated it")]
    Paging(i64),
}

impl DsmError {
    /// The Manager could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, DsmError::Transport { .. } | DsmError::Tls { .. })
    }
}

/// Reads the API key: from `file` if given, else from `MEDIC_DSM_API_KEY`. Surrounding
/// whitespace (a trailing newline) is removed.
pub fn load_api_key(file: Option<&Path>) -> Result<SecretString, DsmError> {
    let (raw, origin) = match file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| DsmError::KeyFile {
                path: p.display().to_string(),
                source,
            })?,
            format!("in {}", p.display()),
        ),
        None => (
            std::env::var(API_KEY_ENV).map_err(|_| DsmError::NoApiKey)?,
            format!("in {API_KEY_ENV}"),
        ),
    };
    let key = raw.trim();
    if key.is_empty() {
        return Err(DsmError::EmptyKey(origin));
    }
    Ok(SecretString::from(key.to_owned()))
}

/// Retries: delays `initial * 2^n`, capped at `max`, with jitter (between half and all of
/// it). 5xx and unsent requests are retried `max_retries` times; 429s (the Manager counts
/// requests over the last 60 s and processes nothing while over the limit) are retried
/// until their delays add up to `throttled_budget`, so that a storm slows a run down
/// instead of failing its steps.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial: Duration,
    pub max: Duration,
    pub throttled_budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            throttled_budget: Duration::from_secs(300),
        }
    }
}

/// The shared per-Manager rate limit (a token bucket).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Requests per second; 0 means no limit.
    pub per_second: f64,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 10,
        }
    }
}

/// How to reach one Manager.
#[derive(Clone, Debug)]
pub struct DsmConfig {
    /// The API's base, e.g. `https://dsm.example.com:4119/api`.
    pub base_url: Url,
    pub api_key: SecretString,
    /// PEM certificates added to the system's roots (a private CA).
    pub ca_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    pub rate: RateLimit,
}

fn loopback_host(url: &Url) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl DsmConfig {
    /// `url` is the Manager's address: `https://dsm:4119` or `https://dsm:4119/api` (a
    /// bare host gets `/api`). Plain `http` is refused except on loopback (simulators and
    /// mocks), and so are credentials in the URL.
    pub fn new(url: &str, api_key: SecretString) -> Result<DsmConfig, DsmError> {
        let bad = |reason: &str| DsmError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" if loopback_host(&base) => {}
            "http" => {
                return Err(bad(
                    "use https: the API key must not cross the network in clear text",
                ));
            }
            _ => return Err(bad("the scheme must be https")),
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(&format!(
                "put no credentials in the URL; the API key comes from {API_KEY_ENV} or a key file"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("the URL must not have a query or a fragment"));
        }
        if base.path() == "/" || base.path().is_empty() {
            base.set_path("/api");
        }
        Ok(DsmConfig {
            base_url: base,
            api_key,
            ca_pem: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            rate: RateLimit::default(),
        })
    }
}

/// A client of one Manager. Cheap to clone: clones share the connection pool, the rate
/// limit and the request counter.
#[derive(Clone)]
pub struct DsmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DsmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsmClient")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing `/`.
    base: String,
    key: SecretString,
    retry: RetryPolicy,
    bucket: TokenBucket,
    sent: AtomicU64,
    version: Mutex<Option<ManagerBuild>>,
}

/// Whether repeating a request can change anything on the Manager.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Safe {
    /// Reads and searches.
    Yes,
    /// Creates something (a scheduled task).
    No,
}

/// The whole `source()` chain of an error, joined: reqwest's own message is only "error
/// sending request", the reason is further down.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    // reqwest's and hyper's outer messages ("error sending request for url (...)", "client
    // error (Connect)") repeat the URL or say nothing: keep them only if nothing else is left.
    let generic =
        |p: &String| p.starts_with("error sending request") || p.starts_with("client error (");
    if parts.iter().any(|p| !generic(p)) {
        parts.retain(|p| !generic(p));
    }
    parts.join(": ")
}

fn is_certificate_problem(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("certificate") || d.contains("unknownissuer") || d.contains("notvalidforname")
}

/// `X-DSM-Version: DSM/20.0.463` -> 20.0.463 (the part after the last `/`). The header
/// is on every 200 answer, "Version of the DSM which responded to the API call" (the
/// vendor's OpenAPI document; ds-domain.md §2.1); there is no Manager-info endpoint in the
/// v1 API (§2.1), so this is how the `manager-version` probe reads the Manager's build.
// inferred: the value's form (a prefix, then `/`, then the 3-part build) comes from a public
// script that splits on `/` (ds-domain.md §2.1), not from the vendor's document; anything
// else is refused (`DsmError::NoVersion`), never read as a build.
pub(crate) fn parse_version_header(v: &str) -> Option<ManagerBuild> {
    v.rsplit('/').next()?.trim().parse().ok()
}

/// The URL of `path` (starting with `/`) under the API's `base`, with `query` encoded by
/// the URL crate reqwest uses (`application/x-www-form-urlencoded`, as the simulator and the
/// Manager read it).
fn endpoint(base: &str, path: &str, query: &[(&str, &str)]) -> Result<Url, DsmError> {
    let mut url = Url::parse(&format!("{base}{path}"))
        .map_err(|e| DsmError::Client(format!("bad API URL {base}{path}: {e}")))?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

impl DsmClient {
    pub fn new(config: DsmConfig) -> Result<DsmClient, DsmError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .https_only(config.base_url.scheme() == "https")
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")));
        if loopback_host(&config.base_url) {
            // A proxy from the environment must not see loopback traffic.
            b = b.no_proxy();
        }
        if let Some(pem) = &config.ca_pem {
            let certs =
                Certificate::from_pem_bundle(pem).map_err(|e| DsmError::CaBundle(chain(&e)))?;
            if certs.is_empty() {
                return Err(DsmError::CaBundle("no PEM certificate in it".to_owned()));
            }
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| DsmError::Client(chain(&e)))?;
        Ok(DsmClient {
            inner: Arc::new(Inner {
                http,
                base: config.base_url.as_str().trim_end_matches('/').to_owned(),
                key: config.api_key,
                retry: config.retry,
                bucket: TokenBucket::new(config.rate.per_second, config.rate.burst),
                sent: AtomicU64::new(0),
                version: Mutex::new(None),
            }),
        })
    }

    /// The API's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// HTTP requests sent so far (each retry counts).
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// The Manager build of the latest answer that carried `X-DSM-Version`.
    pub fn last_manager_version(&self) -> Option<ManagerBuild> {
        *self
            .inner
            .version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn redact(&self, s: &str) -> String {
        let key = self.inner.key.expose_secret();
        if key.len() >= 4 && s.contains(key) {
            s.replace(key, "[redacted]")
        } else {
            s.to_owned()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let r = &self.inner.retry;
        let exp = r
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(r.max);
        // Spreads concurrent retries apart.
        exp.mul_f64(rand::random_range(0.5..=1.0))
    }

    fn headers(&self) -> Result<HeaderMap, DsmError> {
        let mut h = HeaderMap::new();
        h.insert("api-version", HeaderValue::from_static("v1"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let mut key = HeaderValue::from_str(self.inner.key.expose_secret()).map_err(|_| {
            DsmError::Client(
                "the API key has characters that cannot be sent in an HTTP header".to_owned(),
            )
        })?;
        key.set_sensitive(true);
        h.insert("api-secret-key", key);
        Ok(h)
    }

    /// One API call, with the rate limit and the retries. `path` starts with `/`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&J>,
        safe: Safe,
    ) -> Result<Vec<u8>, DsmError> {
        let endpoint = endpoint(&self.inner.base, path, query)?;
        let url = endpoint.to_string();
        let headers = self.headers()?;
        let mut attempt: u32 = 0;
        let mut throttled: u32 = 0;
        let mut throttled_wait = Duration::ZERO;
        loop {
            self.inner.bucket.acquire().await;
            self.inner.sent.fetch_add(1, Ordering::Relaxed);
            let mut rb = self
                .inner
                .http
                .request(method.clone(), endpoint.clone())
                .headers(headers.clone());
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let retryable_error = |e: &reqwest::Error| {
                e.is_connect() || (safe == Safe::Yes && (e.is_timeout() || e.is_request()))
            };
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    let detail = self.redact(&chain(&e));
                    if is_certificate_problem(&detail) {
                        return Err(DsmError::Tls { url, detail });
                    }
                    if retryable_error(&e) && attempt < self.inner.retry.max_retries {
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    if safe == Safe::No && !e.is_connect() {
                        return Err(DsmError::Interrupted { url, detail });
                    }
                    return Err(DsmError::Transport { url, detail });
                }
            };
            let status = resp.status();
            if let Some(v) = resp.headers().get("x-dsm-version")
                && let Some(b) = v.to_str().ok().and_then(parse_version_header)
            {
                *self
                    .inner
                    .version
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b);
            }
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    if safe == Safe::Yes && attempt < self.inner.retry.max_retries {
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    let detail = self.redact(&chain(&e));
                    return Err(if safe == Safe::No {
                        DsmError::Interrupted { url, detail }
                    } else {
                        DsmError::Transport { url, detail }
                    });
                }
            };
            if status.is_success() {
                return Ok(bytes.to_vec());
            }
            let message = self.redact(&error_message(&bytes));
            if status == StatusCode::TOO_MANY_REQUESTS {
                let d = self.backoff(throttled);
                if throttled_wait + d <= self.inner.retry.throttled_budget {
                    // Everyone waits: the limit is per key, not per request.
                    self.inner.bucket.pause(d);
                    tokio::time::sleep(d).await;
                    throttled += 1;
                    throttled_wait += d;
                    continue;
                }
            } else if matches!(status.as_u16(), 500 | 502 | 503 | 504)
                && attempt < self.inner.retry.max_retries
            {
                tokio::time::sleep(self.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS
                || matches!(status.as_u16(), 500 | 502 | 503 | 504)
            {
                return Err(DsmError::GaveUp {
                    method: method.to_string(),
                    url,
                    status: status.as_u16(),
                    attempts: attempt + throttled + 1,
                    message,
                });
            }
            if matches!(status.as_u16(), 401 | 403) {
                return Err(DsmError::Forbidden {
                    url,
                    status: status.as_u16(),
                    message,
                });
            }
            return Err(DsmError::Http {
                method: method.to_string(),
                url,
                status: status.as_u16(),
                message,
            });
        }
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&J>,
        safe: Safe,
    ) -> Result<T, DsmError> {
        let bytes = self.call(method.clone(), path, query, body, safe).await?;
        serde_json::from_slice(&bytes).map_err(|e| DsmError::Decode {
            method: method.to_string(),
            url: format!("{}{path}", self.inner.base),
            detail: e.to_string(),
        })
    }

    /// A system setting's value (`GET /systemsettings/{name}`).
    pub async fn system_setting(&self, name: &str) -> Result<String, DsmError> {
        #[derive(serde::Deserialize)]
        struct V {
            value: Option<String>,
        }
        let path = format!("/systemsettings/{name}");
        let v: V = self
            .call_json(Method::GET, &path, &[], None, Safe::Yes)
            .await?;
        v.value.ok_or_else(|| DsmError::Decode {
            method: "GET".to_owned(),
            url: format!("{}{path}", self.inner.base),
            detail: "the setting has no value".to_owned(),
        })
    }

    /// The Manager's build, from the `X-DSM-Version` of a fresh (small) request.
    pub async fn manager_version(&self) -> Result<ManagerBuild, DsmError> {
        let path = format!("/systemsettings/{DIRECT_DOWNLOAD_SETTING}");
        let bytes = self.call(Method::GET, &path, &[], None, Safe::Yes).await;
        // The version header came with the answer, whatever the body says.
        let _ = bytes?;
        self.last_manager_version().ok_or(DsmError::NoVersion(None))
    }

    /// `POST /computers/search` with `criteria` (ANDed), at most `max_items` results.
    pub async fn search_computers(
        &self,
        criteria: Vec<J>,
        max_items: u32,
        expand: &[&str],
    ) -> Result<Vec<Computer>, DsmError> {
        let query: Vec<(&str, &str)> = expand.iter().map(|e| ("expand", *e)).collect();
        let body = json!({ "maxItems": max_items, "searchCriteria": criteria });
        let c: Computers = self
            .call_json(
                Method::POST,
                "/computers/search",
                &query,
                Some(&body),
                Safe::Yes,
            )
            .await?;
        Ok(c.computers)
    }

    /// Every computer whose ID satisfies `criteria`, paged by ID (`idTest greater-than` the
    /// last ID, `page_size` per request; a page shorter than `page_size` is the last).
    pub async fn search_computers_paged(
        &self,
        criteria: &[J],
        page_size: u32,
        expand: &[&str],
    ) -> Result<Vec<Computer>, DsmError> {
        let page_size = page_size.max(1);
        let mut out: Vec<Computer> = Vec::new();
        let mut after: i64 = 0;
        loop {
            let mut c = criteria.to_vec();
            c.push(json!({ "idTest": "greater-than", "idValue": after }));
            let page = self.search_computers(c, page_size, expand).await?;
            let n = page.len();
            let last = page.iter().map(|c| c.id).max();
            out.extend(page);
            if n < page_size as usize {
                return Ok(out);
            }
            match last {
                Some(l) if l > after => after = l,
                _ => return Err(DsmError::Paging(after)),
            }
        }
    }

    /// Every computer, paged by ID (the import asks for `computerSettings`, the driver's
    /// host map for `none`).
    pub async fn list_computers(
        &self,
        page_size: u32,
        expand: &[&str],
    ) -> Result<Vec<Computer>, DsmError> {
        self.search_computers_paged(&[], page_size, expand).await
    }

    /// The state of every computer with `min <= ID <= max`, with the expansions the `dsm`
    /// driver reads (status, security updates, Anti-Malware, tasks in progress): the
    /// driver's batched poll.
    pub async fn poll_computers(
        &self,
        min: i64,
        max: i64,
        page_size: u32,
    ) -> Result<Vec<Computer>, DsmError> {
        let criteria = [
            json!({ "idTest": "greater-than-or-equal", "idValue": min }),
            json!({ "idTest": "less-than-or-equal", "idValue": max }),
        ];
        self.search_computers_paged(&criteria, page_size, &POLL_EXPAND)
            .await
    }

    /// Every computer group (`GET /computergroups`).
    pub async fn computer_groups(&self) -> Result<Vec<ComputerGroup>, DsmError> {
        let g: ComputerGroups = self
            .call_json(Method::GET, "/computergroups", &[], None, Safe::Yes)
            .await?;
        Ok(g.computer_groups)
    }

    /// Creates a run-now, one-shot `check-for-security-updates` task for one computer (the
    /// Manager deletes it once it has started). Returns the task's ID.
    pub async fn run_security_update(&self, computer_id: i64, name: &str) -> Result<i64, DsmError> {
        let task = json!({
            "name": name,
            "type": "check-for-security-updates",
            "enabled": true,
            "runNow": true,
            "scheduleDetails": {
                "timeZone": "UTC",
                "recurrenceType": "none",
                "recurrenceCount": 1,
                "onceOnlyScheduleParameters": { "startTime": 0 }
            },
            "checkForSecurityUpdatesTaskParameters": {
                "computerFilter": { "type": "computer", "computerID": computer_id },
                "timeout": "never"
            }
        });
        let t: ScheduledTask = self
            .call_json(Method::POST, "/scheduledtasks", &[], Some(&task), Safe::No)
            .await?;
        Ok(t.id)
    }
}

/// The `message` of a `{"message": "..."}` error body, else the start of the body.
fn error_message(body: &[u8]) -> String {
    if let Ok(J::Object(o)) = serde_json::from_slice::<J>(body)
        && let Some(J::String(m)) = o.get("message")
    {
        return m.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_owned();
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretString {
        SecretString::from("k".to_owned())
    }

    #[test]
    fn urls_get_api_and_refuse_clear_text_off_loopback() {
        let c = DsmConfig::new("https://dsm.example.com:4119", key()).ok();
        assert_eq!(
            c.map(|c| c.base_url.to_string()),
            Some("https://dsm.example.com:4119/api".to_owned())
        );
        let c = DsmConfig::new("https://dsm:4119/api/", key()).ok();
        assert_eq!(
            c.map(|c| c.base_url.to_string()),
            Some("https://dsm:4119/api/".to_owned())
        );
        assert!(DsmConfig::new("http://127.0.0.1:4010", key()).is_ok());
        assert!(DsmConfig::new("http://[::1]:4010", key()).is_ok());
        for bad in [
            "http://dsm.example.com:4119",
            "ftp://dsm",
            "https://user:pw@dsm:4119",
            "https://dsm:4119/api?x=1",
            "dsm:4119",
        ] {
            assert!(DsmConfig::new(bad, key()).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_header_drops_the_prefix() {
        assert_eq!(
            parse_version_header("DSM/20.0.463").map(|b| b.to_string()),
            Some("20.0.463".to_owned())
        );
        assert_eq!(
            parse_version_header("20.0.366").map(|b| b.to_string()),
            Some("20.0.366".to_owned())
        );
        assert!(parse_version_header("DSM/garbage").is_none());
    }

    #[test]
    fn queries_are_encoded() {
        let url = |q: &[(&str, &str)]| {
            endpoint("https://dsm:4119/api", "/computers/search", q).map(|u| u.to_string())
        };
        assert_eq!(
            url(&[("expand", "none"), ("expand", "a b&c=d")])
                .ok()
                .as_deref(),
            Some("https://dsm:4119/api/computers/search?expand=none&expand=a+b%26c%3Dd")
        );
        assert_eq!(
            url(&[]).ok().as_deref(),
            Some("https://dsm:4119/api/computers/search")
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"message":"Too many API requests"}"#),
            "Too many API requests"
        );
        assert_eq!(error_message(b""), "(no message)");
        assert_eq!(error_message(b"<html>oops</html>"), "<html>oops</html>");
    }

    #[test]
    fn the_key_file_is_trimmed_and_never_empty() {
        let dir = std::env::temp_dir().join(format!("medic-dsm-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let p = dir.join("key");
        std::fs::write(&p, "secret-123\n").ok();
        assert_eq!(
            load_api_key(Some(&p))
                .ok()
                .map(|k| k.expose_secret().to_owned()),
            Some("secret-123".to_owned())
        );
        std::fs::write(&p, " \n").ok();
        let e = load_api_key(Some(&p)).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("is empty")));
        std::fs::remove_dir_all(&dir).ok();
    }
}
