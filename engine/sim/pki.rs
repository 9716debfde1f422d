//! Throwaway PKI for one simulator run: an Ed25519 OS CA, per-node server certificates, role
//! client certificates, and a maintenance CA for nodes that have no configuration yet.
//!
//! Talos generates an Ed25519 OS CA by default and signs apid server certificates and
//! `talosctl` client certificates with it; the client role is the certificate Subject
//! Organization (`os:admin`, `os:operator`, `os:reader`), with KeyUsage DigitalSignature and
//! ExtKeyUsage ClientAuth (`talos-api.md` §1.2). Private keys are written the way Talos writes
//! them: the PEM label is `ED25519 PRIVATE KEY` but the body is plain PKCS#8 (v1, as Go's
//! `MarshalPKCS8PrivateKey` produces), so a real `talosctl` reads our talosconfig unchanged.
//! Maintenance mode uses a separate self-signed CA whose certificates the OS CA does not
//! trust, exactly like a fresh node's per-boot maintenance CA. Everything here lives in memory
//! for the lifetime of the simulator; keys are wrapped in [`Secret`] so they never reach logs.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, SanType,
};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// PEM label Talos uses for Ed25519 private keys (the body is PKCS#8).
pub const ED25519_KEY_LABEL: &str = "ED25519 PRIVATE KEY";

/// A Talos API role carried in a client certificate's Subject Organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// `os:admin`: everything.
    Admin,
    /// `os:operator`: reads plus reboot/shutdown and etcd snapshots.
    Operator,
    /// `os:reader`: reads only (no secrets).
    Reader,
    /// `os:etcd:backup`: etcd snapshots and the etcd reads (members, status, alarms) only.
    EtcdBackup,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reader, Role::EtcdBackup];

    /// The Organization string (`os:admin`, ...).
    pub fn org(self) -> &'static str {
        match self {
            Role::Admin => "os:admin",
            Role::Operator => "os:operator",
            Role::Reader => "os:reader",
            Role::EtcdBackup => "os:etcd:backup",
        }
    }

    /// Parses an Organization string; unknown roles are `None` (Talos ignores them).
    pub fn from_org(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.org() == s)
    }
}

/// A PKI failure (certificate generation only; nothing here touches the network or disk).
#[derive(Debug, thiserror::Error)]
#[error("cannot generate {what}")]
pub struct PkiError {
    what: String,
    #[source]
    source: rcgen::Error,
}

fn pki_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError {
        what: what.to_string(),
        source,
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    /// The certificate PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// The certificate DER.
    pub cert_der: Vec<u8>,
    /// The key PEM with the Talos label `ED25519 PRIVATE KEY` over a PKCS#8 body.
    pub key_pem: Secret<String>,
    /// The PKCS#8 DER of the key (what rustls loads).
    pub key_der: Secret<Vec<u8>>,
    /// `base64(std)(sha256(SubjectPublicKeyInfo))`: talosctl's `--cert-fingerprint`.
    pub spki_fingerprint: String,
}

/// A certificate authority (self-signed, Ed25519) that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Ed25519 PKCS#8 v1 prefix (`SEQUENCE { 0, { 1.3.101.112 }, OCTET STRING { OCTET STRING <32> } }`).
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Re-encodes ring's PKCS#8 v2 Ed25519 key as the v1 document Go writes (seed only).
fn pkcs8_v1(key: &KeyPair) -> Vec<u8> {
    let der = key.serialized_der();
    // ring's v2 document has the same first 16 bytes except length and version; the 32-byte
    // seed follows at offset 16 in both encodings.
    match der.get(16..48) {
        Some(seed) if der.len() >= 48 && der[5..14] == PKCS8_V1_ED25519_PREFIX[5..14] => {
            let mut v1 = PKCS8_V1_ED25519_PREFIX.to_vec();
            v1.extend_from_slice(seed);
            v1
        }
        _ => der.to_vec(),
    }
}

/// PEM-encodes `der` with `label` (64-column base64 lines).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// `base64(std)(sha256(spki))`, the fingerprint talosctl pins with `--cert-fingerprint`.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki_der))
}

fn new_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ED25519).map_err(pki_err(what))
}

fn finish(cert: rcgen::Certificate, key: &KeyPair) -> CertAndKey {
    use rcgen::PublicKeyData as _;
    let key_der = pkcs8_v1(key);
    CertAndKey {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: Secret::new(pem_encode(ED25519_KEY_LABEL, &key_der)),
        key_der: Secret::new(key_der),
        spki_fingerprint: spki_fingerprint(&key.subject_public_key_info()),
    }
}

impl Ca {
    /// A new self-signed Ed25519 CA with common name `name` (e.g. `talos`).
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        let key = new_key("the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(pki_err("the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate PEM (the talosconfig `ca`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A server certificate valid for the IPs and DNS names given (apid: node addresses,
    /// hostname; the simulator adds 127.0.0.1).
    pub fn server_cert(
        &self,
        ips: &[std::net::IpAddr],
        dns: &[&str],
    ) -> Result<CertAndKey, PkiError> {
        let key = new_key("a server key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = dns.first() {
            dn.push(DnType::CommonName, *first);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .chain(
                dns.iter()
                    .filter_map(|d| d.to_string().try_into().ok().map(SanType::DnsName)),
            )
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki_err("a server certificate"))?;
        Ok(finish(cert, &key))
    }

    /// A client certificate for `role` (Subject Organization = the role, KeyUsage
    /// DigitalSignature, ExtKeyUsage ClientAuth), as `talosctl gen config` makes for admin.
    pub fn client_cert(&self, role: Role) -> Result<CertAndKey, PkiError> {
        let key = new_key("a client key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, role.org());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki_err("a client certificate"))?;
        Ok(finish(cert, &key))
    }
}

/// Everything a simulator run needs: the OS CA, its role client certificates and the
/// maintenance CA.
#[derive(Debug)]
pub struct SimPki {
    /// The OS CA: signs the apid server certificates and the client certificates.
    pub os_ca: Ca,
    /// A separate CA for maintenance-mode servers (not trusted by the OS CA's clients).
    pub maintenance_ca: Ca,
    /// Client certificate per role.
    pub clients: Vec<(Role, CertAndKey)>,
}

impl SimPki {
    /// Generates the CAs and one client certificate per role.
    pub fn generate() -> Result<SimPki, PkiError> {
        let os_ca = Ca::generate("talos")?;
        let maintenance_ca = Ca::generate("talos-maintenance")?;
        let clients = Role::ALL
            .into_iter()
            .map(|r| Ok((r, os_ca.client_cert(r)?)))
            .collect::<Result<Vec<_>, PkiError>>()?;
        Ok(SimPki {
            os_ca,
            maintenance_ca,
            clients,
        })
    }

    /// The client certificate of `role`.
    pub fn client(&self, role: Role) -> Option<&CertAndKey> {
        self.clients
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_carries_role_and_talos_key_label() {
        let ca = Ca::generate("talos").unwrap();
        let c = ca.client_cert(Role::Reader).unwrap();
        assert!(
            c.key_pem
                .expose()
                .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
        );
        assert_eq!(c.key_der.expose().len(), 48, "PKCS#8 v1 Ed25519");
        let (_, cert) = x509_parser::parse_x509_certificate(&c.cert_der).unwrap();
        let orgs: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        assert_eq!(orgs, ["os:reader"]);
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
        assert_eq!(Role::from_org("os:operator"), Some(Role::Operator));
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    }
}
