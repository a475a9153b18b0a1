//! Login: the ssh-agent, then each identity file (a key parsed here signs through
//! [`super::sign`]).

use super::*;

/// The key in `file` parsed for signing here, or `None` to leave it to libssh2 (another
/// key type or format, a missing file, a wrong passphrase: libssh2 then reports it per
/// host as it always did).
pub(super) fn preload(
    file: &std::path::Path,
    passphrase: Option<&SecretString>,
) -> Option<Arc<Identity>> {
    if !file.exists() {
        return None;
    }
    match Identity::load(file, passphrase) {
        Ok(id) => id.map(Arc::new),
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "ssh key left to libssh2");
            None
        }
    }
}

/// The ssh-agent first, then each identity file. Never mentions the passphrase. True
/// when a key parsed here signed the login.
pub(super) fn authenticate(
    s: &Settings,
    sess: &Session,
    ep: &Endpoint,
) -> Result<bool, TransportError> {
    let mut tried: Vec<String> = Vec::new();
    if s.use_agent {
        match agent_auth(sess, &ep.user, s.agent_socket.as_deref()) {
            Ok(true) => return Ok(false),
            Ok(false) => tried.push("ssh-agent (no key accepted)".to_owned()),
            Err(e) => tried.push(format!("ssh-agent ({})", e.message())),
        }
    }
    for (file, id) in s.identity_files.iter().zip(&s.identities) {
        if let Some(id) = id {
            match sign::userauth(sess, &ep.user, id) {
                Ok(()) if sess.authenticated() => return Ok(true),
                Ok(()) => tried.push(format!("{} (not accepted)", file.display())),
                Err(e) => tried.push(format!("{} ({})", file.display(), e.message())),
            }
            continue;
        }
        if !file.exists() {
            continue;
        }
        let pass = s.passphrase.as_ref().map(|p| p.expose_secret());
        match sess.userauth_pubkey_file(&ep.user, None, file, pass) {
            Ok(()) if sess.authenticated() => return Ok(false),
            Ok(()) => tried.push(format!("{} (not accepted)", file.display())),
            Err(e) => tried.push(format!("{} ({})", file.display(), e.message())),
        }
    }
    if tried.is_empty() {
        tried.push("nothing: no ssh-agent and no identity file".to_owned());
    }
    Err(TransportError::Auth {
        endpoint: ep.to_string(),
        user: ep.user.clone(),
        tried: tried.join("; "),
    })
}

pub(super) fn agent_auth(
    sess: &Session,
    user: &str,
    socket: Option<&std::path::Path>,
) -> Result<bool, ssh2::Error> {
    let mut agent = sess.agent()?;
    if let Some(p) = socket {
        agent.set_identity_path(p)?;
    }
    agent.connect()?;
    agent.list_identities()?;
    let mut ok = false;
    for id in agent.identities()? {
        if agent.userauth(user, &id).is_ok() && sess.authenticated() {
            ok = true;
            break;
        }
    }
    let _ = agent.disconnect();
    Ok(ok)
}
