//! TLS for SSL and SASL_SSL listeners (rustls, ring provider). The key and
//! certificate chain come from one PEM file, `ssl.keystore.location`, as
//! Kafka's `ssl.keystore.type=PEM` keystores hold them.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio_rustls::rustls;

/// The TLS acceptor of a listener, built once at startup.
pub fn acceptor(keystore: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let pem = std::fs::read(keystore)
        .with_context(|| format!("reading `ssl.keystore.location` {}", keystore.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("certificates in {}", keystore.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", keystore.display());
    }
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("private key in {}", keystore.display()))?
        .with_context(|| {
            format!(
                "{} holds no (unencrypted PKCS#8, PKCS#1 or SEC1) private key",
                keystore.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the key does not match the certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
