//! TLS for `https://` bases: the cluster CA is the only trust anchor (never the system roots),
//! TLS 1.3 only, rustls with the `ring` provider, and an optional client certificate for
//! callers that authenticate as a node.
//!
//! A client without [`TlsClientOptions`] trusts no certificate at all, so an `https://` base
//! fails at the handshake with the server's certificate refused, not by silently trusting it.

use reqwest::ClientBuilder;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// What an `https://` client trusts and presents, as PEM text.
#[derive(Clone, Default)]
pub struct TlsClientOptions {
    /// The cluster CA certificate(s): the only certificates a server may chain to.
    pub ca_pem: Vec<u8>,
    /// The client certificate chain (leaf first), for servers that require one.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The private key of `client_cert_pem`.
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes to a log.
        f.debug_struct("TlsClientOptions")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("client_key", &self.client_key_pem.is_some())
            .finish()
    }
}

/// Why [`TlsClientOptions`] cannot make a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM text could not be parsed.
    #[error("could not parse the {what} as PEM")]
    Pem {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// A PEM text holds no block of the kind expected.
    #[error("no {what} found in the PEM text")]
    Missing {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error("a client certificate and its key go together; got only one")]
    ClientCertWithoutKey,
    /// A CA certificate was refused as a trust anchor.
    #[error("the CA certificate is not usable as a trust anchor")]
    TrustAnchor(#[source] rustls::Error),
    /// rustls refused the configuration (for example a key that does not fit the certificate).
    #[error("could not build the TLS client configuration")]
    Config(#[source] rustls::Error),
}

const CA: &str = "CA certificate";
const CLIENT_CERT: &str = "client certificate";
const CLIENT_KEY: &str = "client key";

/// Gives `builder` its TLS configuration: `options`, or, without them, one that trusts no
/// server certificate. reqwest is built without a TLS provider of its own, so every client
/// gets one here.
pub(super) fn configure(
    builder: ClientBuilder,
    options: Option<&TlsClientOptions>,
) -> Result<ClientBuilder, TlsConfigError> {
    Ok(builder.use_preconfigured_tls(client_config(options)?))
}

fn client_config(options: Option<&TlsClientOptions>) -> Result<ClientConfig, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(o) = options {
        for cert in certs(CA, &o.ca_pem)? {
            roots.add(cert).map_err(TlsConfigError::TrustAnchor)?;
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsConfigError::Config)?
            .with_root_certificates(roots);
    let (cert, key) = options.map_or((None, None), |o| {
        (o.client_cert_pem.as_deref(), o.client_key_pem.as_deref())
    });
    let mut config = match (cert, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certs(CLIENT_CERT, cert)?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|source| match source {
                pem::Error::NoItemsFound => TlsConfigError::Missing { what: CLIENT_KEY },
                source => TlsConfigError::Pem {
                    what: CLIENT_KEY,
                    source,
                },
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::Config)?
        }
        _ => return Err(TlsConfigError::ClientCertWithoutKey),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn certs(
    what: &'static str,
    pem_text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Missing { what });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_make_a_config_that_trusts_nothing() {
        let config = client_config(None).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn bad_pem_is_named() {
        let o = TlsClientOptions {
            ca_pem: b"not pem".to_vec(),
            ..TlsClientOptions::default()
        };
        let e = client_config(Some(&o)).unwrap_err();
        assert_eq!(e.to_string(), "no CA certificate found in the PEM text");
    }
}
