//! The operator's SSH key, read, decrypted and parsed once per run.
//!
//! libssh2 reads the key file on every connection, and with OpenSSL 3 that means two
//! failed PEM decodes (its decoder machinery walks every provider) before it parses the
//! OpenSSH format itself, plus bcrypt-pbkdf for a passphrase-protected key: ~1 ms of the
//! controller's CPU per host for a plain key, far more for an encrypted one. For an
//! OpenSSH-format Ed25519 key (what `ssh-keygen` writes by default) the transport signs
//! the authentication challenge itself with this key through libssh2's sign callback
//! ([`super::libssh2`]); any other key (RSA, ECDSA, PEM, another cipher) goes through
//! libssh2's own file path, as before.
//!
//! Format (OpenSSH `PROTOCOL.key`): `openssh-key-v1\0`, cipher name, KDF name, KDF options,
//! key count, public key blobs, then the private section (encrypted unless the cipher is
//! `none`): two equal check integers, then per key its type, public and private parts and
//! a comment.

use std::path::Path;

use aes::cipher::{KeyIvInit as _, StreamCipher as _};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};

const MAGIC: &[u8] = b"openssh-key-v1\0";
const ED25519: &str = "ssh-ed25519";

/// Why a key that looked like ours could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read the ssh key {path}: {message}")]
    Read { path: String, message: String },
    #[error(
        "the ssh key {path} is encrypted: give its passphrase (--ssh-passphrase-file or $MEDIC_SSH_PASSPHRASE)"
    )]
    NeedPassphrase { path: String },
    #[error("wrong passphrase for the ssh key {path}")]
    WrongPassphrase { path: String },
    #[error("the ssh key {path} is damaged: {what}")]
    Damaged { path: String, what: &'static str },
}

/// An Ed25519 key ready to sign.
pub struct Identity {
    /// The SSH public key blob (`string "ssh-ed25519", string key`).
    public_blob: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_blob", &self.public_blob.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The key in `path`, when it is an OpenSSH-format Ed25519 key this module can use;
    /// `Ok(None)` for any other kind of key (libssh2 then reads it itself).
    pub fn load(
        path: &Path,
        passphrase: Option<&SecretString>,
    ) -> Result<Option<Identity>, IdentityError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return Err(IdentityError::Read {
                    path: shown,
                    message: e.to_string(),
                });
            }
        };
        Identity::parse(&text, passphrase).map_err(|e| e.at(&shown))
    }

    pub fn public_blob(&self) -> &[u8] {
        &self.public_blob
    }

    /// The raw 64-byte Ed25519 signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.pair.sign(data).as_ref().to_vec()
    }

    fn parse(text: &str, passphrase: Option<&SecretString>) -> Result<Option<Identity>, Bad> {
        let Some(body) = text
            .trim()
            .strip_prefix("-----BEGIN OPENSSH PRIVATE KEY-----")
            .and_then(|r| r.strip_suffix("-----END OPENSSH PRIVATE KEY-----"))
        else {
            return Ok(None);
        };
        let b64: String = body.split_whitespace().collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| Bad::Damaged("not base64"))?;
        let mut r = Reader(
            data.strip_prefix(MAGIC)
                .ok_or(Bad::Damaged("no openssh-key-v1 header"))?,
        );
        let cipher = r.string()?;
        let kdf = r.string()?;
        let kdf_options = r.string()?;
        if r.u32()? != 1 {
            return Ok(None);
        }
        let public_blob = r.string()?.to_vec();
        let mut private = r.string()?.to_vec();
        let mut pk = Reader(&public_blob);
        if pk.string()? != ED25519.as_bytes() {
            return Ok(None);
        }
        match (cipher, kdf) {
            (b"none", b"none") => {}
            (b"aes256-ctr", b"bcrypt") => {
                let pass = passphrase.ok_or(Bad::NeedPassphrase)?;
                let mut o = Reader(kdf_options);
                let salt = o.string()?;
                let rounds = o.u32()?;
                let mut key_iv = [0u8; 48];
                bcrypt_pbkdf::bcrypt_pbkdf(pass.expose_secret(), salt, rounds, &mut key_iv)
                    .map_err(|_| Bad::Damaged("bad bcrypt parameters"))?;
                let mut c =
                    ctr::Ctr128BE::<aes::Aes256>::new(key_iv[..32].into(), key_iv[32..].into());
                c.apply_keystream(&mut private);
            }
            _ => return Ok(None),
        }
        let mut p = Reader(&private);
        if p.u32()? != p.u32()? {
            return Err(if cipher == b"none" {
                Bad::Damaged("check integers differ")
            } else {
                Bad::WrongPassphrase
            });
        }
        if p.string()? != ED25519.as_bytes() {
            return Err(Bad::Damaged("the private key is not the public key's type"));
        }
        let public = p.string()?;
        let secret = p.string()?;
        if public.len() != 32 || secret.len() != 64 || &secret[32..] != public {
            return Err(Bad::Damaged("malformed ed25519 key"));
        }
        let pair = Ed25519KeyPair::from_seed_and_public_key(&secret[..32], public)
            .map_err(|_| Bad::Damaged("the ed25519 seed does not match its public key"))?;
        if pair.public_key().as_ref() != public || pk.string()? != public {
            return Err(Bad::Damaged(
                "the public key does not match the private key",
            ));
        }
        Ok(Some(Identity { public_blob, pair }))
    }
}

/// A parse failure before the file name is known.
#[derive(Debug)]
enum Bad {
    NeedPassphrase,
    WrongPassphrase,
    Damaged(&'static str),
}

impl Bad {
    fn at(self, path: &str) -> IdentityError {
        let path = path.to_owned();
        match self {
            Bad::NeedPassphrase => IdentityError::NeedPassphrase { path },
            Bad::WrongPassphrase => IdentityError::WrongPassphrase { path },
            Bad::Damaged(what) => IdentityError::Damaged { path, what },
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32, Bad> {
        let (n, rest) = self
            .0
            .split_first_chunk::<4>()
            .ok_or(Bad::Damaged("truncated"))?;
        self.0 = rest;
        Ok(u32::from_be_bytes(*n))
    }

    fn string(&mut self) -> Result<&'a [u8], Bad> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(Bad::Damaged("truncated"));
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    fn keygen(dir: &Path, name: &str, kind: &str, pass: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", pass, "-C", "test", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client) runs");
        assert!(st.success());
        path
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn public_blob_of(path: &Path) -> Vec<u8> {
        let line = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
        let b64 = line.split_whitespace().nth(1).expect("key field");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    }

    #[test]
    fn plain_and_encrypted_ed25519_keys_sign_like_ssh_keygen_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, pass) in [("plain", ""), ("encrypted", "correct horse")] {
            let path = keygen(dir.path(), name, "ed25519", pass);
            let pass = (!pass.is_empty()).then(|| secret(pass));
            let id = Identity::load(&path, pass.as_ref())
                .expect("loads")
                .expect("an ed25519 key");
            let blob = public_blob_of(&path);
            assert_eq!(id.public_blob(), blob.as_slice(), "{name}");
            let raw = &blob[blob.len() - 32..];
            let sig = id.sign(b"challenge");
            assert_eq!(sig.len(), 64);
            UnparsedPublicKey::new(&ED25519, raw)
                .verify(b"challenge", &sig)
                .expect("the signature verifies with the .pub key");
        }
        let enc = dir.path().join("encrypted");
        assert!(matches!(
            Identity::load(&enc, None),
            Err(IdentityError::NeedPassphrase { .. })
        ));
        let wrong =
            Identity::load(&enc, Some(&secret("not-this-one-7f3a"))).expect_err("wrong passphrase");
        assert!(matches!(wrong, IdentityError::WrongPassphrase { .. }));
        assert!(!format!("{wrong} {wrong:?}").contains("not-this-one-7f3a"));
    }

    #[test]
    fn other_keys_are_left_to_libssh2_and_damaged_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ecdsa = keygen(dir.path(), "ecdsa", "ecdsa", "");
        assert!(Identity::load(&ecdsa, None).expect("not ours").is_none());
        let pem = dir.path().join("pem");
        std::fs::write(
            &pem,
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect("write");
        assert!(Identity::load(&pem, None).expect("not ours").is_none());
        let plain = keygen(dir.path(), "plain", "ed25519", "");
        let text = std::fs::read_to_string(&plain).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(3);
        let cut = dir.path().join("cut");
        std::fs::write(&cut, lines.join("\n")).expect("write");
        assert!(matches!(
            Identity::load(&cut, None),
            Err(IdentityError::Damaged { .. })
        ));
        assert!(matches!(
            Identity::load(&dir.path().join("missing"), None),
            Err(IdentityError::Read { .. })
        ));
    }
}
