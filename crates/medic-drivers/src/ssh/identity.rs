//! The operator's SSH key, read, decrypted and parsed once per run.
//!
//! libssh2 reads the key file on every connection, and with OpenSSL 3 that means two
//! failed PEM decodes (its decoder machinery walks every provider) before it parses the
//! OpenSSH format itself, plus bcrypt-pbkdf for a passphrase-protected key: ~1 ms of the
//! controller's CPU per host for a plain key, far more for an encrypted one. For an
//! OpenSSH-format Ed25519 key (what `ssh-keygen` writes by default) the transport signs
//! the authentication challenge itself with this key through libssh2's sign callback
//! ([`super::libssh2`]); any other key (RSA, ECDSA, PEM) goes through
//! libssh2's own file path, as before.
//!
//! The file is parsed and decrypted by RustCrypto's `ssh-key` (every cipher OpenSSH
//! writes: aes256-ctr, aes256-gcm, chacha20-poly1305, the CBC and 3DES ones); its
//! decrypted key material is zeroized when dropped, and the seed is handed to aws-lc by
//! reference only (aws-lc cleanses its key memory when the pair is freed).

use std::path::Path;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use secrecy::{ExposeSecret as _, SecretString};
use ssh_key::{Algorithm, PrivateKey};

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
    Damaged { path: String, what: String },
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
        // A PEM or PKCS#8 key is libssh2's to read; only OpenSSH's own format is parsed here.
        if !text
            .trim_start()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        {
            return Ok(None);
        }
        let key = PrivateKey::from_openssh(text).map_err(|e| Bad::Damaged(e.to_string()))?;
        // The public part is readable without the passphrase: another key type is left to
        // libssh2 before anything is decrypted.
        if key.algorithm() != Algorithm::Ed25519 {
            return Ok(None);
        }
        let public_blob = key
            .public_key()
            .to_bytes()
            .map_err(|e| Bad::Damaged(e.to_string()))?;
        let key = if key.is_encrypted() {
            let pass = passphrase.ok_or(Bad::NeedPassphrase)?;
            key.decrypt(pass.expose_secret().as_bytes())
                .map_err(|e| match e {
                    // The check integers differ (CTR, CBC) or the tag does not verify
                    // (GCM, ChaCha20-Poly1305): what a wrong passphrase looks like.
                    ssh_key::Error::Crypto => Bad::WrongPassphrase,
                    e => Bad::Damaged(e.to_string()),
                })?
        } else {
            key
        };
        let Some(pair) = key.key_data().ed25519() else {
            return Err(Bad::Damaged(
                "the private key is not the public key's type".to_owned(),
            ));
        };
        let public: &[u8; 32] = pair.public.as_ref();
        let seed: &[u8; 32] = pair.private.as_ref();
        let signer = Ed25519KeyPair::from_seed_and_public_key(seed, public).map_err(|_| {
            Bad::Damaged("the ed25519 seed does not match its public key".to_owned())
        })?;
        if signer.public_key().as_ref() != public {
            return Err(Bad::Damaged(
                "the public key does not match the private key".to_owned(),
            ));
        }
        Ok(Some(Identity {
            public_blob,
            pair: signer,
        }))
    }
}

/// A parse failure before the file name is known.
#[derive(Debug)]
enum Bad {
    NeedPassphrase,
    WrongPassphrase,
    Damaged(String),
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

#[cfg(test)]
mod tests {
    use std::process::Command;

    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    use base64::Engine as _;

    use super::*;

    fn keygen(dir: &Path, name: &str, kind: &str, pass: &str) -> std::path::PathBuf {
        keygen_with(dir, name, &["-t", kind], pass)
    }

    fn keygen_with(dir: &Path, name: &str, args: &[&str], pass: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-N", pass, "-C", "test"])
            .args(args)
            .arg("-f")
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

    /// Every cipher `ssh-keygen -Z` offers that OpenSSH uses for new keys: each decrypts
    /// with its passphrase, signs, and names a wrong passphrase as such.
    #[test]
    fn every_openssh_cipher_decrypts_and_a_wrong_passphrase_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        for cipher in [
            "aes256-ctr",
            "aes128-ctr",
            "aes256-cbc",
            "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
        ] {
            let name = cipher.replace(['@', '.'], "_");
            let path = keygen_with(dir.path(), &name, &["-t", "ed25519", "-Z", cipher], "pw 1");
            let id = Identity::load(&path, Some(&secret("pw 1")))
                .unwrap_or_else(|e| panic!("{cipher}: {e}"))
                .expect("an ed25519 key");
            let blob = public_blob_of(&path);
            assert_eq!(id.public_blob(), blob.as_slice(), "{cipher}");
            UnparsedPublicKey::new(&ED25519, &blob[blob.len() - 32..])
                .verify(b"challenge", &id.sign(b"challenge"))
                .unwrap_or_else(|_| panic!("{cipher}: the signature verifies"));
            let wrong = Identity::load(&path, Some(&secret("pw 2"))).expect_err(cipher);
            assert!(
                matches!(wrong, IdentityError::WrongPassphrase { .. }),
                "{cipher}: {wrong}"
            );
            assert_eq!(
                wrong.to_string(),
                format!("wrong passphrase for the ssh key {}", path.display())
            );
        }
    }

    /// ECDSA and RSA keys (plain or encrypted, right passphrase or none) are libssh2's to
    /// read: medic signs with Ed25519 keys only.
    #[test]
    fn ecdsa_and_rsa_keys_are_left_to_libssh2_encrypted_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (kind, bits) in [("ecdsa", "256"), ("ecdsa", "384"), ("rsa", "2048")] {
            for pass in ["", "pw"] {
                let name = format!("{kind}{bits}{pass}");
                let path = keygen_with(dir.path(), &name, &["-t", kind, "-b", bits], pass);
                for given in [None, Some(secret("pw"))] {
                    assert!(
                        Identity::load(&path, given.as_ref())
                            .unwrap_or_else(|e| panic!("{name}: {e}"))
                            .is_none(),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn pem_keys_are_left_to_libssh2_and_damaged_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
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
