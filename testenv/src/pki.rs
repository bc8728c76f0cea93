//! The control plane's PKI: one CA signs the API server's serving certificate and the client
//! certificates the identities authenticate with (as kubeadm's does); the service-account key
//! signs the tokens TokenRequest issues.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate and its key, as PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

/// The cluster CA.
pub struct Ca {
    pub cert: String,
    issuer: Issuer<'static, KeyPair>,
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(30);
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().expect("a CA key");
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sealgate-testenv-ca");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p);
        let cert = p.self_signed(&key).expect("a CA certificate").pem();
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    /// A serving certificate for these DNS names and IP addresses.
    pub fn serving(&self, names: &[&str]) -> Pair {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            })
            .collect();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate: Kubernetes takes the user from the common name and the groups from
    /// the organisations.
    pub fn client(&self, user: &str, groups: &[&str]) -> Pair {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            p.distinguished_name.push(DnType::OrganizationName, *g);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    fn sign(&self, mut p: CertificateParams) -> Pair {
        validity(&mut p);
        let key = KeyPair::generate().expect("a key");
        let cert = p.signed_by(&key, &self.issuer).expect("a certificate");
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl Default for Ca {
    fn default() -> Self {
        Ca::new()
    }
}

/// The service-account signing key: (private key PEM, public key PEM).
pub fn service_account_key() -> (String, String) {
    let key = KeyPair::generate().expect("a service-account key");
    (key.serialize_pem(), key.public_key_pem())
}
