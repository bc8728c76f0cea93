//! A throwaway PKI for TLS tests.

/// A CA and a serving certificate for 127.0.0.1 and localhost signed by it, as PEM:
/// (CA certificate, serving certificate, serving key).
pub fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (curl) takes a certificate whose subject equals its issuer (both
    // empty) for a self-signed one and refuses the chain.
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sealgate test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("a serving key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("serving parameters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params
        .signed_by(&key, &issuer)
        .expect("a serving certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
