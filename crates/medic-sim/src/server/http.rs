//! The HTTP side of the simulator server: accepting (plain or TLS) connections, HTTP/1.1
//! with hyper, then for each request: latency, fault bursts, `api-version` and
//! `api-secret-key` checks, dispatch, and the Manager's headers on the answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use serde_json::{Value as J, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::api::{self, Call};
use super::faults::Verdict;
use super::{RequestRecord, Shared, lock};

/// Request bodies larger than this are refused (a search filter is a few hundred bytes).
const MAX_BODY: usize = 4 << 20;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    // Owned here: when the server is dropped this task is aborted, which drops the set and
    // so aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            match acceptor {
                Some(a) => {
                    // A client that refuses the certificate ends the handshake: nothing to do.
                    if let Ok(tls) = a.accept(stream).await {
                        serve_connection(TokioIo::new(tls), shared).await;
                    }
                }
                None => serve_connection(TokioIo::new(stream), shared).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    // A connection error (client gone, bad request line) only ends that connection.
    let _ = http1::Builder::new().serve_connection(io, svc).await;
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(kv), String::new()),
        })
        .collect()
}

fn reply(shared: &Shared, status: u16, body: Option<J>) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("X-DSM-Version", shared.version_header());
    let bytes = match body {
        Some(j) => {
            b = b.header("Content-Type", "application/json");
            Bytes::from(j.to_string())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(bytes))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(shared: &Shared, status: u16, message: &str) -> Response<Full<Bytes>> {
    reply(shared, status, Some(json!({ "message": message })))
}

/// Compares without an early exit, so the key cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The simulator-only routes (`/sim/...`), used by the fake agents of the test fleet.
fn simulator_only(path: &str) -> bool {
    path == "/sim" || path.starts_with("/sim/")
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    // Faults are for the Manager API's clients: the fake agents' calls are neither slowed
    // nor numbered, so a storm hits exactly the requests a test counts.
    let latency = shared.faults.latency();
    if !latency.is_zero() && !simulator_only(&path) {
        tokio::time::sleep(latency).await;
    }
    let query = parse_query(req.uri().query());
    let route = api::route_of(&path);
    let resp = answer(shared, req, &method, &path, &query).await;
    lock(&shared.log).push(RequestRecord {
        method,
        route,
        status: resp.status().as_u16(),
    });
    resp
}

async fn answer(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    method: &str,
    path: &str,
    query: &[(String, String)],
) -> Response<Full<Bytes>> {
    let verdict = if simulator_only(path) {
        Verdict::Pass
    } else {
        shared.faults.next()
    };
    match verdict {
        Verdict::Pass => {}
        Verdict::TooMany => return error(shared, 429, "Too many API requests"),
        Verdict::ServerError => {
            return error(
                shared,
                500,
                "Internal server error (injected by the simulator)",
            );
        }
    }
    let headers = req.headers();
    let vendor = path.starts_with("/api/") || path == "/api";
    if vendor
        && headers
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() != "v1")
    {
        return error(
            shared,
            400,
            "The api-version header is missing or unsupported: send api-version: v1.",
        );
    }
    let key_ok = headers
        .get("api-secret-key")
        .is_some_and(|v| same(v.as_bytes(), shared.key.expose_secret().as_bytes()));
    if !key_ok {
        return error(
            shared,
            403,
            "Not authorized: the api-secret-key header is missing, unknown or inactive.",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(shared, 400, &format!("Cannot read the request body: {e}.")),
    };
    let call = Call {
        method,
        path,
        query,
        body: &body,
    };
    let (status, body) = api::dispatch(shared, &call).await;
    reply(shared, status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query(Some(
                "expand=securityUpdates&expand=computerStatus%2CantiMalware&x"
            )),
            vec![
                ("expand".to_owned(), "securityUpdates".to_owned()),
                ("expand".to_owned(), "computerStatus,antiMalware".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41+b"), "A b");
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
