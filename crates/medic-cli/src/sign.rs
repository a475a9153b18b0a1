//! Reading a plan file back (`medic apply --plan`), with its seal and, when asked, its
//! signature checked; and signing a plan (`medic plan --sign`).
//!
//! Keys are OpenSSH Ed25519 keys (`ssh-keygen -t ed25519`): the secret key is read from
//! its file only (encrypted keys take their passphrase from `$MEDIC_SIGN_PASSPHRASE`), the
//! public keys are `ssh-ed25519 BASE64` entries of a file (a `.pub` file, an
//! `authorized_keys` or an `allowed_signers` file: any line holding one). The signature is
//! OpenSSH's own format (`PROTOCOL.sshsig`, what `ssh-keygen -Y sign` writes) over the
//! plan's digest, with the namespace `medic-plan`, so a change board can also check it with
//! `ssh-keygen -Y verify` alone.

use std::path::Path;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use medic_config::{Problem, Problems, SourceFile};
use medic_plan::{Plan, PlanReadError};

use crate::Failure;

/// The SSHSIG namespace: a signature made for another purpose (a git commit, a file) never
/// passes for a plan's.
const NAMESPACE: &str = "medic-plan";
const MAGIC: &[u8] = b"SSHSIG";
const ED25519_NAME: &str = "ssh-ed25519";
const ARMOR_BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &str = "-----END SSH SIGNATURE-----";

fn problem(file: &str, code: &'static str, msg: impl Into<String>, help: &str) -> Failure {
    let f = SourceFile::new(file, "");
    Failure::BadInput(Problems(vec![Problem::new(&f, None, code, msg).help(help)]))
}

/// A plan read from `path`, its seal checked (every difference named) and, with `key`, its
/// signature checked against the public keys in that file. Nothing is written before.
pub(crate) fn read_plan(path: &Path, key: Option<&Path>) -> Result<Plan, Failure> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        problem(
            &shown,
            "medic::io::read",
            format!("cannot read {shown}: {e}"),
            "check the path",
        )
    })?;
    let file = match medic_plan::read_plan_json(&text) {
        Ok(f) => f,
        Err(PlanReadError::Tampered(diffs)) => {
            let f = SourceFile::new(&shown, "");
            return Err(Failure::BadInput(Problems(
                diffs
                    .into_iter()
                    .map(|d| {
                        Problem::new(&f, None, "medic::plan::tampered", d).help(
                            "the plan was changed after `medic plan` wrote it: make it again with `medic plan --format json` and have it approved again",
                        )
                    })
                    .collect(),
            )));
        }
        Err(e @ PlanReadError::Unsealed) => {
            return Err(problem(
                &shown,
                "medic::plan::unsealed",
                e.to_string(),
                "make the plan again with `medic plan --format json`",
            ));
        }
        Err(PlanReadError::Invalid(e)) => {
            return Err(problem(
                &shown,
                "medic::plan::invalid",
                e.to_string(),
                "pass a file written by `medic plan --format json`",
            ));
        }
    };
    match (key, file.signature.as_deref()) {
        (Some(key), Some(sig)) => {
            let signer = verify(sig, &file.digest, key, &shown)?;
            eprintln!("plan {shown}: signature by {signer} verified");
        }
        (Some(key), None) => {
            return Err(problem(
                &shown,
                "medic::plan::unsigned",
                format!(
                    "the plan is not signed, and --verify-key {} asks for a signature",
                    key.display()
                ),
                "sign it with `medic plan --format json --sign SECRET-KEY`, or apply without --verify-key",
            ));
        }
        (None, Some(sig)) => {
            if let Ok(parsed) = Sshsig::parse(sig) {
                eprintln!(
                    "note: plan {shown} is signed by {}; the signature was not checked (pass --verify-key PUBLIC-KEY)",
                    key_fingerprint(&parsed.public_blob)
                );
            }
        }
        (None, None) => {}
    }
    Ok(file.plan)
}

/// Signs the plan's digest with the OpenSSH Ed25519 secret key in `key`; the armored
/// signature to put in the plan's seal.
pub(crate) fn sign(plan: &Plan, key: &Path) -> Result<String, Failure> {
    let shown = key.display().to_string();
    let pass = std::env::var("MEDIC_SIGN_PASSPHRASE")
        .ok()
        .map(secrecy::SecretString::from);
    let id = medic_drivers::ssh::Identity::load(key, pass.as_ref())
        .map_err(|e| {
            problem(
                &shown,
                "medic::sign::key",
                e.to_string().replace("--ssh-passphrase-file or $MEDIC_SSH_PASSPHRASE", "$MEDIC_SIGN_PASSPHRASE"),
                "pass an OpenSSH Ed25519 secret key (`ssh-keygen -t ed25519 -f FILE` makes one; an encrypted key takes its passphrase from $MEDIC_SIGN_PASSPHRASE)",
            )
        })?
        .ok_or_else(|| {
            problem(
                &shown,
                "medic::sign::key",
                format!("{shown} is not an OpenSSH Ed25519 secret key"),
                "make one with `ssh-keygen -t ed25519 -f FILE` and pass FILE (its FILE.pub verifies the plan)",
            )
        })?;
    let digest = medic_plan::plan_digest(plan);
    let signed = signed_data(digest.as_bytes());
    let raw = id.sign(&signed);
    let mut sig_field = Vec::new();
    put_string(&mut sig_field, ED25519_NAME.as_bytes());
    put_string(&mut sig_field, &raw);
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut blob, id.public_blob());
    put_string(&mut blob, NAMESPACE.as_bytes());
    put_string(&mut blob, b"");
    put_string(&mut blob, b"sha512");
    put_string(&mut blob, &sig_field);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let mut out = String::from(ARMOR_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    Ok(out)
}

/// What an SSHSIG signature signs: the preamble, namespace, hash name and the message's
/// SHA-512 (`PROTOCOL.sshsig`).
fn signed_data(message: &[u8]) -> Vec<u8> {
    let h = digest::digest(&digest::SHA512, message);
    let mut d = MAGIC.to_vec();
    put_string(&mut d, NAMESPACE.as_bytes());
    put_string(&mut d, b"");
    put_string(&mut d, b"sha512");
    put_string(&mut d, h.as_ref());
    d
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// `SHA256:...` as `ssh-keygen -l` prints it.
fn key_fingerprint(blob: &[u8]) -> String {
    let h = digest::digest(&digest::SHA256, blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(h.as_ref())
    )
}

struct Sshsig {
    public_blob: Vec<u8>,
    namespace: Vec<u8>,
    hash: Vec<u8>,
    sig_type: Vec<u8>,
    sig: Vec<u8>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (n, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*n))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(s)
    }
}

impl Sshsig {
    fn parse(armored: &str) -> Result<Sshsig, &'static str> {
        let body = armored
            .trim()
            .strip_prefix(ARMOR_BEGIN)
            .and_then(|r| r.strip_suffix(ARMOR_END))
            .ok_or("not an SSH signature")?;
        let b64: String = body.split_whitespace().collect();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the signature is not base64")?;
        let mut r = Reader(blob.strip_prefix(MAGIC).ok_or("not an SSH signature")?);
        let damaged = "the signature is damaged";
        if r.u32().ok_or(damaged)? != 1 {
            return Err("unsupported SSH signature version");
        }
        let public_blob = r.string().ok_or(damaged)?.to_vec();
        let namespace = r.string().ok_or(damaged)?.to_vec();
        let _reserved = r.string().ok_or(damaged)?;
        let hash = r.string().ok_or(damaged)?.to_vec();
        let mut s = Reader(r.string().ok_or(damaged)?);
        let sig_type = s.string().ok_or(damaged)?.to_vec();
        let sig = s.string().ok_or(damaged)?.to_vec();
        Ok(Sshsig {
            public_blob,
            namespace,
            hash,
            sig_type,
            sig,
        })
    }
}

/// The raw 32-byte key of an `ssh-ed25519` public key blob.
fn ed25519_raw(blob: &[u8]) -> Option<&[u8]> {
    let mut r = Reader(blob);
    (r.string()? == ED25519_NAME.as_bytes())
        .then(|| r.string())
        .flatten()
        .filter(|k| k.len() == 32 && r.0.is_empty())
}

/// The `ssh-ed25519` public key blobs of a file, any line holding one.
fn public_keys(text: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == ED25519_NAME
                && let Some(b64) = words.next()
                && let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64)
                && ed25519_raw(&blob).is_some()
            {
                out.push(blob);
                break;
            }
        }
    }
    out
}

/// Checks `armored` over `digest` with a key of the file `key`; returns the signer's key
/// fingerprint.
fn verify(armored: &str, digest: &str, key: &Path, plan: &str) -> Result<String, Failure> {
    let key_shown = key.display().to_string();
    let text = std::fs::read_to_string(key).map_err(|e| {
        problem(
            &key_shown,
            "medic::io::read",
            format!("cannot read {key_shown}: {e}"),
            "pass the public key file (FILE.pub) of the key that signed the plan",
        )
    })?;
    let keys = public_keys(&text);
    if keys.is_empty() {
        return Err(problem(
            &key_shown,
            "medic::verify::no_key",
            format!("{key_shown} holds no ssh-ed25519 public key"),
            "pass the .pub file of the signing key (a line `ssh-ed25519 AAAA... comment`)",
        ));
    }
    let refuse = |msg: String| {
        problem(
            plan,
            "medic::verify::bad_signature",
            msg,
            "apply only the plan the change board signed: ask for the signed file again",
        )
    };
    let sig = Sshsig::parse(armored).map_err(|e| refuse(format!("the plan's signature: {e}")))?;
    if sig.namespace != NAMESPACE.as_bytes() {
        return Err(refuse(format!(
            "the plan's signature was made for `{}`, not for a medic plan",
            String::from_utf8_lossy(&sig.namespace)
        )));
    }
    let who = key_fingerprint(&sig.public_blob);
    if !keys.contains(&sig.public_blob) {
        return Err(refuse(format!(
            "the plan is signed by another key ({who}), not by a key of {key_shown}"
        )));
    }
    let raw = ed25519_raw(&sig.public_blob)
        .ok_or_else(|| refuse("the plan's signature names no ed25519 key".to_owned()))?;
    if sig.sig_type != ED25519_NAME.as_bytes() {
        return Err(refuse(
            "the plan's signature is not an ed25519 signature".to_owned(),
        ));
    }
    let data = match sig.hash.as_slice() {
        b"sha512" => signed_data(digest.as_bytes()),
        b"sha256" => {
            let h = digest::digest(&digest::SHA256, digest.as_bytes());
            let mut d = MAGIC.to_vec();
            put_string(&mut d, NAMESPACE.as_bytes());
            put_string(&mut d, b"");
            put_string(&mut d, b"sha256");
            put_string(&mut d, h.as_ref());
            d
        }
        _ => {
            return Err(refuse(
                "the plan's signature uses an unknown hash".to_owned(),
            ));
        }
    };
    UnparsedPublicKey::new(&ED25519, raw)
        .verify(&data, &sig.sig)
        .map_err(|_| {
            refuse(format!(
                "the plan's signature ({who}) does not verify: the plan was changed after it was signed"
            ))
        })?;
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_found_in_pub_authorized_and_allowed_signers_lines() {
        let blob = {
            let mut b = Vec::new();
            put_string(&mut b, ED25519_NAME.as_bytes());
            put_string(&mut b, &[7u8; 32]);
            b
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
        let text = format!(
            "# the board\nssh-ed25519 {b64} alice@board\nbob@board ssh-ed25519 {b64}\nssh-rsa AAAA x\nssh-ed25519 notbase64!\n"
        );
        assert_eq!(public_keys(&text), vec![blob.clone(), blob]);
    }

    #[test]
    fn damaged_signatures_are_refused_not_panicked_on() {
        for bad in [
            "",
            ARMOR_BEGIN,
            "-----BEGIN SSH SIGNATURE-----\n!!\n-----END SSH SIGNATURE-----",
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----",
            "-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQAAAP8=\n-----END SSH SIGNATURE-----",
        ] {
            assert!(Sshsig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
