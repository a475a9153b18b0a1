//! TLS for the simulator server: certificates from files, or a CA and a server certificate
//! generated at start (for tests and `medic-sim serve --tls-self-signed`), whose CA PEM the
//! client is given as its custom CA bundle. With the `wrong-cert` fault the generated
//! certificate names another host, so that a client that verifies names must refuse it.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::ServerError;

/// How the server speaks TLS.
#[derive(Clone, Debug, Default)]
pub enum TlsSetup {
    /// Plain HTTP (loopback only).
    #[default]
    Plain,
    /// A PEM certificate chain (server certificate first) and its PEM private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A CA and a certificate for `localhost` and `127.0.0.1` signed by it, made at start;
    /// [`super::DsmServer::ca_pem`] gives the CA.
    SelfSigned,
}

pub(crate) struct Material {
    pub acceptor: TlsAcceptor,
    pub ca_pem: Option<String>,
}

/// The name the `wrong-cert` fault's certificate is issued for.
pub(crate) const WRONG_NAME: &str = "wrong-host.invalid";

pub(crate) fn material(
    setup: &TlsSetup,
    wrong_cert: bool,
) -> Result<Option<Material>, ServerError> {
    let (chain, key, ca_pem) = match setup {
        TlsSetup::Plain if wrong_cert => return Err(ServerError::WrongCertNeedsSelfSigned),
        TlsSetup::Files { .. } if wrong_cert => return Err(ServerError::WrongCertNeedsSelfSigned),
        TlsSetup::Plain => return Ok(None),
        TlsSetup::Files { cert, key } => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| {
                    ServerError::Tls(format!(
                        "cannot read certificates from {}: {e}",
                        cert.display()
                    ))
                })?;
            if chain.is_empty() {
                return Err(ServerError::Tls(format!(
                    "{} holds no PEM certificate",
                    cert.display()
                )));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                ServerError::Tls(format!(
                    "cannot read the private key {}: {e}",
                    key.display()
                ))
            })?;
            (chain, key, None)
        }
        TlsSetup::SelfSigned => {
            let names = if wrong_cert {
                vec![WRONG_NAME.to_owned()]
            } else {
                vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                ]
            };
            let (chain, key, ca) = generate(names).map_err(|e| ServerError::Tls(e.to_string()))?;
            (chain, key, Some(ca))
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Material {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        ca_pem,
    }))
}

/// A fresh CA and a server certificate for `names`, signed by it: (chain, key, CA PEM).
fn generate(
    names: Vec<String>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "medic-sim test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "medic-sim DSM");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    let chain = vec![cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((chain, key, ca_cert.pem()))
}
