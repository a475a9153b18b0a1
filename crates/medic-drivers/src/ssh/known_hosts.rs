//! Host-key checking against OpenSSH `known_hosts` files, done here rather than by
//! libssh2. libssh2's own check has two problems for us: it compares the server's key
//! with *every* key listed for the host whatever its type, so a host listed with ed25519
//! that negotiates ecdsa is a false "mismatch" (libssh2 #526), and it cannot say which
//! key types a host is listed with, which we need *before* the handshake to restrict the
//! negotiation to them (`method_pref(HostKey, ...)`).
//!
//! Supported: plain and hashed (`|1|salt|hash`) host fields, `[host]:port`, patterns
//! with `*`, `?` and `!`, several files, `@revoked` (always refused). `@cert-authority`
//! lines are skipped (certificates are not supported by the transport).

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Where the transport reports each host key it accepts as new or refuses, as
/// [`medic_exec::RunEvent`]s (`HostKeyAccepted`, `HostKeyRefused`) for the run's
/// reporters: the summary, the events file and the report. The driver tells it which
/// inventory host an endpoint is, so an event names the host.
#[derive(Clone, Debug, Default)]
pub struct HostKeyEvents {
    events: medic_exec::DriverEvents,
    names: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, u16), String>>>,
}

impl HostKeyEvents {
    pub fn new(events: medic_exec::DriverEvents) -> HostKeyEvents {
        HostKeyEvents {
            events,
            names: std::sync::Arc::default(),
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, u16), String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `host` is the inventory's name of what is at `address:port`.
    pub(crate) fn name(&self, address: &str, port: u16, host: &str) {
        let mut names = self.names();
        names
            .entry((address.to_owned(), port))
            .or_insert_with(|| host.to_owned());
    }

    fn host(&self, ep: &super::Endpoint) -> Option<String> {
        self.names().get(&(ep.address.clone(), ep.port)).cloned()
    }

    pub(crate) fn accepted(&self, ep: &super::Endpoint, blob: &[u8], file: &Path) {
        self.events.push(medic_exec::RunEvent::HostKeyAccepted {
            host: self.host(ep),
            endpoint: ep.to_string(),
            key_type: blob_key_type(blob).unwrap_or_else(|| "unknown".to_owned()),
            fingerprint: fingerprint_sha256(blob),
            file: file.display().to_string(),
        });
    }

    /// Reports a refusal; errors that are not about the key itself (a file that cannot be
    /// read) are not host-key events.
    pub(crate) fn refused(&self, ep: &super::Endpoint, e: &HostKeyError) {
        let (reason, key_type, fingerprint) = match e {
            HostKeyError::Unknown {
                key_type,
                fingerprint,
                ..
            } => ("unknown", key_type, fingerprint),
            HostKeyError::Changed {
                key_type,
                fingerprint,
                ..
            } => ("changed", key_type, fingerprint),
            HostKeyError::Revoked {
                key_type,
                fingerprint,
                ..
            } => ("revoked", key_type, fingerprint),
            HostKeyError::OtherType {
                key_type,
                fingerprint,
                ..
            } => ("other_type", key_type, fingerprint),
            _ => return,
        };
        self.events.push(medic_exec::RunEvent::HostKeyRefused {
            host: self.host(ep),
            endpoint: ep.to_string(),
            key_type: key_type.clone(),
            fingerprint: fingerprint.clone(),
            reason: reason.to_owned(),
            message: e.to_string(),
        });
    }
}

/// Why a host key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    #[error(
        "host key of {host} is unknown ({key_type} {fingerprint}): not in {files}; add it to a known_hosts file, or allow new keys with accept_new_host_keys"
    )]
    Unknown {
        host: String,
        key_type: String,
        fingerprint: String,
        files: String,
    },
    #[error(
        "HOST KEY CHANGED for {host}: the server presented {key_type} {fingerprint}, but {file}:{line} lists another {key_type} key; refusing to connect (possible man-in-the-middle; if the host was really reinstalled, remove the old line)"
    )]
    Changed {
        host: String,
        key_type: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("host key of {host} ({key_type} {fingerprint}) is revoked in {file}:{line}")]
    Revoked {
        host: String,
        key_type: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error(
        "host {host} presented a {key_type} key ({fingerprint}) but known_hosts lists only {listed} for it; refusing"
    )]
    OtherType {
        host: String,
        key_type: String,
        fingerprint: String,
        listed: String,
    },
    #[error("cannot read known_hosts file {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot record the new host key of {host} in {path}: {message}")]
    Write {
        host: String,
        path: String,
        message: String,
    },
    #[error("the server of {host} sent no usable host key")]
    NoKey { host: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
}

#[derive(Clone, Debug)]
enum Hosts {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<String>),
}

#[derive(Clone, Debug)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

/// The entries of one or more `known_hosts` files.
#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
    entries: Vec<Entry>,
    /// Entries by each plain host name they list (lowercase), so a host's lookup does not
    /// scan a fleet-sized file: 1,000 connections each scanning 1,000 lines was most of
    /// the controller's CPU.
    exact: HashMap<String, Vec<usize>>,
    /// Entries that need matching per host: hashed names, wildcards, negations.
    scan: Vec<usize>,
}

/// The verdict on a server's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// The host is in no file.
    NotFound,
    Refused(HostKeyError),
}

/// What a file looked like when it was read: its length and modification time.
type Stamp = Option<(u64, Option<SystemTime>)>;

/// The files read once and shared by every connection, read again when one of them
/// changes (a key learnt with accept-new, an operator's edit during the run).
pub struct Cache {
    files: Vec<PathBuf>,
    loaded: Mutex<Option<(Vec<Stamp>, Arc<KnownHosts>)>>,
}

impl Cache {
    pub fn new(files: Vec<PathBuf>) -> Cache {
        Cache {
            files,
            loaded: Mutex::new(None),
        }
    }

    pub fn get(&self) -> Result<Arc<KnownHosts>, HostKeyError> {
        let stamps: Vec<Stamp> = self
            .files
            .iter()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.len(), m.modified().ok()))
            })
            .collect();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((was, kh)) = loaded.as_ref()
            && *was == stamps
        {
            return Ok(Arc::clone(kh));
        }
        let kh = Arc::new(KnownHosts::load(&self.files)?);
        *loaded = Some((stamps, Arc::clone(&kh)));
        Ok(kh)
    }
}

/// The name a host is filed under: `host` on port 22, `[host]:port` otherwise.
pub fn host_token(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH's `SHA256:<base64, no padding>` fingerprint of a public key blob.
pub fn fingerprint_sha256(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The key type named at the start of an SSH public key blob (`ssh-ed25519`, ...).
pub fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    String::from_utf8(name.to_vec()).ok()
}

/// The host-key algorithms a client may accept for a key type listed in known_hosts.
pub fn algorithms_for_key_type(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

impl KnownHosts {
    /// Reads the files; a file that does not exist is empty. Malformed lines are skipped,
    /// as OpenSSH does.
    pub fn load(files: &[PathBuf]) -> Result<KnownHosts, HostKeyError> {
        let mut kh = KnownHosts {
            files: files.to_vec(),
            ..KnownHosts::default()
        };
        for path in files {
            let text = match std::fs::read(path) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(HostKeyError::Read {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    });
                }
            };
            for (i, line) in text.lines().enumerate() {
                if let Some(e) = parse_line(path, i + 1, line) {
                    kh.push(e);
                }
            }
        }
        Ok(kh)
    }

    fn push(&mut self, e: Entry) {
        let i = self.entries.len();
        match &e.hosts {
            Hosts::Patterns(pats)
                if pats
                    .iter()
                    .all(|p| !p.starts_with('!') && !p.contains(['*', '?'])) =>
            {
                for p in pats {
                    let list = self.exact.entry(p.to_ascii_lowercase()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
            _ => self.scan.push(i),
        }
        self.entries.push(e);
    }

    /// The entries for `token`, in file order.
    fn for_host<'a>(&'a self, token: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let exact = self
            .exact
            .get(&token.to_ascii_lowercase())
            .map_or(&[][..], Vec::as_slice);
        let mut idx: Vec<usize> = exact.to_vec();
        idx.extend(
            self.scan
                .iter()
                .copied()
                .filter(|&i| self.entries[i].matches(token)),
        );
        idx.sort_unstable();
        idx.into_iter().map(|i| &self.entries[i])
    }

    /// The key types listed (not revoked) for `host:port`, in file order, without repeats.
    pub fn key_types(&self, host: &str, port: u16) -> Vec<String> {
        let token = host_token(host, port);
        let mut out: Vec<String> = Vec::new();
        for e in self.for_host(&token) {
            if e.marker == Marker::None && !out.contains(&e.key_type) {
                out.push(e.key_type.clone());
            }
        }
        out
    }

    /// Checks the key blob the server presented.
    pub fn check(&self, host: &str, port: u16, blob: &[u8]) -> Verdict {
        let token = host_token(host, port);
        let key_type = blob_key_type(blob).unwrap_or_else(|| "unknown".to_owned());
        let fingerprint = fingerprint_sha256(blob);
        let mut same_type: Option<&Entry> = None;
        let mut listed: Vec<&str> = Vec::new();
        let mut matched = false;
        for e in self.for_host(&token) {
            if e.marker == Marker::Revoked {
                if e.key == blob {
                    return Verdict::Refused(HostKeyError::Revoked {
                        host: token.clone(),
                        key_type,
                        fingerprint,
                        file: e.file.display().to_string(),
                        line: e.line,
                    });
                }
                continue;
            }
            if e.key_type == key_type {
                if e.key == blob {
                    matched = true;
                } else if same_type.is_none() {
                    same_type = Some(e);
                }
            }
            if !listed.contains(&e.key_type.as_str()) {
                listed.push(&e.key_type);
            }
        }
        if matched {
            return Verdict::Match;
        }
        if let Some(e) = same_type {
            return Verdict::Refused(HostKeyError::Changed {
                host: token.clone(),
                key_type,
                fingerprint,
                file: e.file.display().to_string(),
                line: e.line,
            });
        }
        if listed.is_empty() {
            return Verdict::NotFound;
        }
        Verdict::Refused(HostKeyError::OtherType {
            host: token.clone(),
            key_type,
            fingerprint,
            listed: listed.join(", "),
        })
    }

    /// The refusal for a host found in no file.
    pub fn unknown(&self, host: &str, port: u16, blob: &[u8]) -> HostKeyError {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        HostKeyError::Unknown {
            host: host_token(host, port),
            key_type: blob_key_type(blob).unwrap_or_else(|| "unknown".to_owned()),
            fingerprint: fingerprint_sha256(blob),
            files: if files.is_empty() {
                "no known_hosts file".to_owned()
            } else {
                files.join(", ")
            },
        }
    }
}

/// Appends `host:port key` to `path` under an exclusive lock (another medic may be
/// learning keys at the same time). Re-reads the file under the lock first: if another
/// writer already recorded this exact key, nothing is appended; if it recorded another
/// key of the same type, that is a refusal like any changed key.
pub fn append(path: &Path, host: &str, port: u16, blob: &[u8]) -> Result<(), HostKeyError> {
    let token = host_token(host, port);
    let werr = |e: io::Error| HostKeyError::Write {
        host: token.clone(),
        path: path.display().to_string(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut file: File = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(werr)?;
    file.lock().map_err(werr)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(werr)?;
    let mut now = KnownHosts {
        files: vec![path.to_path_buf()],
        ..KnownHosts::default()
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(e) = parse_line(path, i + 1, line) {
            now.push(e);
        }
    }
    match now.check(host, port, blob) {
        Verdict::Match => return Ok(()),
        Verdict::Refused(e) => return Err(e),
        Verdict::NotFound => {}
    }
    let key_type = blob_key_type(blob).ok_or_else(|| HostKeyError::NoKey {
        host: token.clone(),
    })?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    let mut line = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        line.push('\n');
    }
    line.push_str(&format!("{token} {key_type} {b64}\n"));
    file.write_all(line.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

fn parse_line(file: &Path, line_no: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => {
            first = fields.next()?;
            Marker::Revoked
        }
        // Certificate authorities vouch for certificates, which the transport does not
        // use; such a line is never a host's key.
        "@cert-authority" => return None,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    let key_type = fields.next()?.to_owned();
    let key = base64::engine::general_purpose::STANDARD
        .decode(fields.next()?)
        .ok()?;
    if blob_key_type(&key).as_deref() != Some(key_type.as_str()) {
        return None;
    }
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Hosts::Hashed {
            salt: b64.decode(salt).ok()?,
            hash: b64.decode(hash).ok()?,
        }
    } else {
        Hosts::Patterns(first.split(',').map(str::to_owned).collect())
    };
    Some(Entry {
        file: file.to_path_buf(),
        line: line_no,
        marker,
        hosts,
        key_type,
        key,
    })
}

impl Entry {
    fn matches(&self, token: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(token.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(pats) => {
                let host = token.to_ascii_lowercase();
                let mut positive = false;
                for p in pats {
                    let (negated, p) = match p.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, p.as_str()),
                    };
                    if wildcard(&p.to_ascii_lowercase(), &host) {
                        if negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

/// OpenSSH pattern matching: `*` any run, `?` any one character.
fn wildcard(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Match => f.write_str("match"),
            Verdict::NotFound => f.write_str("not found"),
            Verdict::Refused(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn hashed(token: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).expect("test value");
        mac.update(token.as_bytes());
        format!("|1|{}|{}", b64(salt), b64(&mac.finalize().into_bytes()))
    }

    fn load(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().expect("test value");
        let p = dir.path().join("known_hosts");
        std::fs::write(&p, text).expect("test value");
        let kh = KnownHosts::load(&[p, dir.path().join("missing")]).expect("test value");
        (dir, kh)
    }

    #[test]
    fn verdicts() {
        let ed = blob("ssh-ed25519", b"one");
        let ed2 = blob("ssh-ed25519", b"two");
        let ec = blob("ecdsa-sha2-nistp256", b"three");
        let text = format!(
            "# comment\n[10.0.0.1]:2222 ssh-ed25519 {}\n{} ssh-ed25519 {}\n@revoked * ssh-ed25519 {}\nweb-*,!web-9 ecdsa-sha2-nistp256 {}\n",
            b64(&ed),
            hashed("10.0.0.2", b"salty"),
            b64(&ed),
            b64(&ed2),
            b64(&ec)
        );
        let (_d, kh) = load(&text);
        assert_eq!(kh.check("10.0.0.1", 2222, &ed), Verdict::Match);
        assert_eq!(kh.check("10.0.0.1", 22, &ed), Verdict::NotFound);
        assert_eq!(kh.check("10.0.0.2", 22, &ed), Verdict::Match);
        assert!(matches!(
            kh.check("10.0.0.2", 22, &ed2),
            Verdict::Refused(HostKeyError::Revoked { .. })
        ));
        let changed = kh.check("10.0.0.1", 2222, &blob("ssh-ed25519", b"evil"));
        let Verdict::Refused(e) = changed else {
            panic!("{changed:?}")
        };
        let msg = e.to_string();
        assert!(msg.contains("HOST KEY CHANGED"), "{msg}");
        assert!(
            msg.contains(&fingerprint_sha256(&blob("ssh-ed25519", b"evil"))),
            "{msg}"
        );
        assert!(msg.contains(":2"), "{msg}");
        // Another type than the one listed: not a false "changed".
        assert!(matches!(
            kh.check("10.0.0.1", 2222, &ec),
            Verdict::Refused(HostKeyError::OtherType { .. })
        ));
        assert_eq!(kh.key_types("10.0.0.1", 2222), vec!["ssh-ed25519"]);
        assert_eq!(kh.key_types("WEB-1", 22), vec!["ecdsa-sha2-nistp256"]);
        assert!(kh.key_types("web-9", 22).is_empty());
        assert_eq!(kh.check("web-1", 22, &ec), Verdict::Match);
    }

    #[test]
    fn fingerprint_is_openssh_form() {
        // `ssh-keygen -lf` of this key prints this fingerprint.
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let blob = base64::engine::general_purpose::STANDARD
            .decode(key)
            .expect("test value");
        let fp = fingerprint_sha256(&blob);
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), "SHA256:".len() + 43);
        assert_eq!(blob_key_type(&blob).as_deref(), Some("ssh-ed25519"));
    }

    #[test]
    fn append_is_idempotent_and_refuses_a_conflict() {
        let dir = tempfile::tempdir().expect("test value");
        let p = dir.path().join("sub/known_hosts");
        let ed = blob("ssh-ed25519", b"one");
        append(&p, "127.0.0.9", 2222, &ed).expect("test value");
        append(&p, "127.0.0.9", 2222, &ed).expect("test value");
        let text = std::fs::read_to_string(&p).expect("test value");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("[127.0.0.9]:2222 ssh-ed25519 "));
        assert!(append(&p, "127.0.0.9", 2222, &blob("ssh-ed25519", b"x")).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("[10.0.*]:2222", "[10.0.1.2]:2222"));
    }
}
