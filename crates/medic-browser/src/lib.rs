//! A small headless Chromium driver over the DevTools protocol (CDP), for checking medic's
//! HTML report in a real browser: the report test, its benchmark and the README's
//! screenshot all drive the browser through this one client.
//!
//! Chromium is started with `--remote-debugging-port=0` on loopback and its own profile
//! directory; the protocol runs over one WebSocket (`tungstenite`, synchronous), with a
//! session attached to one page (flattened sessions). Everything the page reports as an
//! error (a console error, an uncaught exception, a log entry of level error, a dialog
//! such as `alert`) is kept, so a test can assert there was none.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "no Chromium found (looked for $MEDIC_CHROMIUM, chromium, chromium-browser, google-chrome on PATH): install Debian's `chromium` package (`apt-get install -y chromium`)"
    )]
    NotFound,
    #[error("cannot start {exe}: {source}")]
    Start { exe: String, source: std::io::Error },
    #[error("chromium did not print its DevTools address within {0:?}: {1}")]
    NoAddress(Duration, String),
    #[error("devtools connection: {0}")]
    Socket(String),
    #[error("devtools: {method} failed: {message}")]
    Protocol { method: String, message: String },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("the page threw: {0}")]
    Script(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The Chromium executable: `$MEDIC_CHROMIUM`, else the first of the usual names on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEDIC_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless Chromium with one page.
pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Errors the page reported, in words.
    errors: Vec<String>,
    load_fired: bool,
    timeout: Duration,
    _profile: PathBuf,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile under `profile_dir` and opens a blank
    /// page of `width` x `height` CSS pixels.
    pub fn launch(profile_dir: &Path, width: u32, height: u32) -> Result<Browser, BrowserError> {
        let exe = find_chromium().ok_or(BrowserError::NotFound)?;
        std::fs::create_dir_all(profile_dir)?;
        let mut child = Command::new(&exe)
            .args([
                "--headless",
                // Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BrowserError::Start {
                exe: exe.display().to_string(),
                source,
            })?;
        let wait = Duration::from_secs(30);
        let url = match devtools_url(&mut child, wait) {
            Ok(u) => u,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut b = match connect(&url) {
            Ok(ws) => Browser {
                child,
                ws,
                session: String::new(),
                next_id: 0,
                errors: Vec::new(),
                load_fired: false,
                timeout: Duration::from_secs(60),
                _profile: profile_dir.to_owned(),
            },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }))?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        b.session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}))?;
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        Ok(b)
    }

    /// Opens `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) -> Result<(), BrowserError> {
        self.load_fired = false;
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(BrowserError::Protocol {
                method: "Page.navigate".to_owned(),
                message: format!("{url}: {e}"),
            });
        }
        let deadline = Instant::now() + self.timeout;
        while !self.load_fired {
            if Instant::now() > deadline {
                return Err(BrowserError::Timeout(
                    self.timeout,
                    format!("{url} to load"),
                ));
            }
            let msg = self.read()?;
            self.event(&msg);
        }
        Ok(())
    }

    /// Evaluates `expr` in the page and returns its value (JSON); a thrown error is an
    /// error.
    pub fn eval(&mut self, expr: &str) -> Result<Value, BrowserError> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("an exception")
                .to_owned();
            return Err(BrowserError::Script(text));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Writes a PNG of the whole page (beyond the viewport) to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), BrowserError> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .map_err(|e| BrowserError::Socket(format!("screenshot data: {e}")))?;
        std::fs::write(path, data)?;
        Ok(())
    }

    /// What the page reported as an error so far (console errors, uncaught exceptions,
    /// error log entries, dialogs).
    pub fn errors(&mut self) -> Result<&[String], BrowserError> {
        // Let events already sent arrive: a round trip orders them before its answer.
        self.call("Runtime.evaluate", json!({ "expression": "0" }))?;
        Ok(&self.errors)
    }

    fn read(&mut self) -> Result<Value, BrowserError> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| BrowserError::Socket(format!("not JSON: {e}")));
                }
                Ok(Message::Close(_)) => {
                    return Err(BrowserError::Socket(
                        "the browser closed the connection".into(),
                    ));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(BrowserError::Timeout(
                        self.timeout,
                        "an answer from the browser".to_owned(),
                    ));
                }
                Err(e) => return Err(BrowserError::Socket(e.to_string())),
            }
        }
    }

    fn event(&mut self, msg: &Value) {
        let params = &msg["params"];
        match msg["method"].as_str().unwrap_or_default() {
            "Page.loadEventFired" => self.load_fired = true,
            "Runtime.consoleAPICalled" if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| a["description"].to_string())
                    })
                    .collect();
                self.errors
                    .push(format!("console.error: {}", args.join(" ")));
            }
            "Runtime.exceptionThrown" => {
                let d = &params["exceptionDetails"];
                self.errors.push(format!(
                    "uncaught: {}",
                    d["exception"]["description"]
                        .as_str()
                        .or(d["text"].as_str())
                        .unwrap_or("?")
                ));
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                self.errors.push(format!(
                    "log: {} ({})",
                    params["entry"]["text"].as_str().unwrap_or("?"),
                    params["entry"]["url"].as_str().unwrap_or("")
                ));
            }
            "Page.javascriptDialogOpening" => {
                self.errors.push(format!(
                    "a {} dialog opened: {}",
                    params["type"].as_str().unwrap_or("?"),
                    params["message"].as_str().unwrap_or("")
                ));
                // Close it, or the page stays blocked.
                let _ = self.send("Page.handleJavaScriptDialog", json!({ "accept": false }));
            }
            _ => {}
        }
    }

    fn send(&mut self, method: &str, params: Value) -> Result<u64, BrowserError> {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if !self.session.is_empty() && !method.starts_with("Target.") {
            msg["sessionId"] = Value::String(self.session.clone());
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| BrowserError::Socket(e.to_string()))?;
        Ok(self.next_id)
    }

    /// Sends a command and waits for its answer, handling the events that come first.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, BrowserError> {
        let id = self.send(method, params)?;
        loop {
            let msg = self.read()?;
            if msg["id"].as_u64() == Some(id) {
                if let Some(e) = msg.get("error") {
                    return Err(BrowserError::Protocol {
                        method: method.to_owned(),
                        message: e["message"].as_str().unwrap_or("?").to_owned(),
                    });
                }
                return Ok(msg["result"].clone());
            }
            self.event(&msg);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.send("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's stderr until it prints `DevTools listening on ws://...`.
fn devtools_url(child: &mut Child, wait: Duration) -> Result<String, BrowserError> {
    let Some(stderr) = child.stderr.take() else {
        return Err(BrowserError::NoAddress(wait, "no stderr".to_owned()));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // The reader keeps draining stderr after the address, so Chromium never blocks on it.
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sent {
                continue;
            }
            if let Some(at) = line.find("ws://") {
                let _ = tx.send(Ok(line[at..].trim().to_owned()));
                sent = true;
            } else if seen.len() < 4000 {
                seen.push_str(&line);
                seen.push('\n');
            }
        }
        if !sent {
            let _ = tx.send(Err(seen));
        }
    });
    match rx.recv_timeout(wait) {
        Ok(Ok(url)) => Ok(url),
        Ok(Err(out)) => Err(BrowserError::NoAddress(wait, out)),
        Err(_) => Err(BrowserError::NoAddress(wait, "nothing".to_owned())),
    }
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, BrowserError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| BrowserError::Socket(format!("not a ws:// address: {url}")))?;
    let host = rest.split('/').next().unwrap_or_default();
    let stream =
        TcpStream::connect(host).map_err(|e| BrowserError::Socket(format!("{host}: {e}")))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let (ws, _) = tungstenite::client::client(url, stream)
        .map_err(|e| BrowserError::Socket(e.to_string()))?;
    Ok(ws)
}
