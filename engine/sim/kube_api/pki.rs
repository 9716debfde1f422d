//! A throwaway Kubernetes PKI: a CA, a server certificate for 127.0.0.1 and an admin client
//! certificate, all generated in memory for one simulator run.
//!
//! Real clients (`kubectl`, written in Go, and kube-rs over rustls) only talk to an API
//! server over TLS and authenticate with a client certificate from the kubeconfig, so the
//! simulator needs the same three certificates a kubeadm or Talos cluster has. Keys are ECDSA
//! P-256 with SHA-256 signatures: rustls with the ring provider verifies that scheme as a
//! server (client certificates) and as a client (server certificates), and Go's crypto/tls
//! accepts it for both roles, with the private key in PKCS#8 PEM form. The server certificate
//! carries an IP SAN for 127.0.0.1 (Go ignores the CN) and the admin certificate has CN
//! `admin`, O `system:masters`, like `talosctl kubeconfig` produces.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use super::Error;

/// The certificates and keys of one simulator run, in PEM and DER form.
pub struct Pki {
    /// The CA certificate (PEM), written to the kubeconfig as `certificate-authority-data`.
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_cert_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    /// The admin client certificate (PEM): `client-certificate-data`.
    pub client_cert_pem: String,
    /// The admin client key (PKCS#8 PEM): `client-key-data`.
    pub client_key_pem: String,
}

fn key() -> Result<KeyPair, Error> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

impl Pki {
    /// Generates a fresh CA, a server certificate for `127.0.0.1`/`localhost` and an admin
    /// client certificate (CN `admin`, O `system:masters`).
    pub fn generate() -> Result<Pki, Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("kubernetes", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, key()?)?;

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server_params.distinguished_name = name("kube-apiserver", None);
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = key()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params.distinguished_name = name("admin", Some("system:masters"));
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = key()?;
        let client_cert = client_params.signed_by(&client_key, &ca)?;

        Ok(Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_cert_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// The rustls server configuration: the server certificate, ALPN `h2` and `http/1.1`,
    /// and client certificates verified against the CA. A connection without a certificate
    /// is accepted at the TLS layer and answered `401 Unauthorized`, as a real API server
    /// with anonymous authentication disabled does.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert_der.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
