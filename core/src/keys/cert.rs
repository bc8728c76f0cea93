//! Self-signed certificates for sealing keys, and reading certificates back.
//!
//! Like Bitnami's, the certificate is only a carrier for the public key: self-signed, CA=true,
//! with explicit validity. sealgate adds URI subject-alternative-names, `sealgate:age:<age1…>` and
//! `sealgate:age:<age1pq1…>`, carrying the key's age recipients (X25519 and hybrid post-quantum),
//! so that a single `cert.pem` lets `seal` produce either format; kubeseal ignores them.

use ::time::OffsetDateTime;
use age::x25519;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose, SanType,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::KeyError;
use crate::envelope::pq;

const AGE_SAN_PREFIX: &str = "sealgate:age:";

/// Make a self-signed certificate for a PKCS#8 RSA key.
pub fn self_signed(
    pkcs8: &[u8],
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    age: Option<&x25519::Recipient>,
    pq: Option<&pq::Recipient>,
) -> Result<Vec<u8>, KeyError> {
    let key_pair = rcgen::KeyPair::try_from(pkcs8)
        .map_err(|e| KeyError::PrivateKey(format!("cannot sign with it: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| KeyError::Generate("the system RNG failed".into()))?;
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(serial.to_vec().into());
    let recipients = age
        .map(|r| r.to_string())
        .into_iter()
        .chain(pq.map(|r| r.to_string()));
    for r in recipients {
        let uri = format!("{AGE_SAN_PREFIX}{r}");
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().map_err(|_| {
                KeyError::Generate("age recipient is not ASCII".into())
            })?));
    }
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| KeyError::Generate(format!("cannot sign the certificate: {e}")))?;
    Ok(cert.der().to_vec())
}

/// What sealgate needs from a certificate.
pub struct CertInfo {
    /// The certificate's SubjectPublicKeyInfo, DER: what key ids are computed from.
    pub spki_der: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The age recipient the certificate carries in its extension, if any.
    pub age_recipient: Option<x25519::Recipient>,
    /// The hybrid post-quantum age recipient it carries, if any.
    pub pq_recipient: Option<pq::Recipient>,
}

/// Reads a DER certificate: an RSA public key, validity and the optional age recipient.
pub fn parse(der: &[u8]) -> Result<CertInfo, KeyError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| KeyError::Certificate(format!("not an X.509 certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(KeyError::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let mut age_recipient = None;
    let mut pq_recipient = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            let Some(r) = uri.strip_prefix(AGE_SAN_PREFIX) else {
                continue;
            };
            let bad =
                |e: String| KeyError::Certificate(format!("bad age recipient in its SAN: {e}"));
            if r.starts_with("age1pq1") {
                pq_recipient = Some(r.parse::<pq::Recipient>().map_err(|e| bad(e.to_string()))?);
            } else {
                age_recipient = Some(
                    r.parse::<x25519::Recipient>()
                        .map_err(|e| bad(e.to_string()))?,
                );
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        spki_der: cert.tbs_certificate.subject_pki.raw.to_vec(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        age_recipient,
        pq_recipient,
    })
}

/// RFC 3339, for messages and annotations.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
