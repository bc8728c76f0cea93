//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1): the payload is signed over
//! its pre-authentication encoding `PAE(type, body)`, so the type cannot be swapped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::AttestError;
use super::keys::{SigningKey, VerifyingKey};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Most signatures an envelope may carry: every one costs a verification per trusted key, and
/// CI signs with one key (a few during a key rotation).
pub const MAX_SIGNATURES: usize = 16;
/// Largest payload (base64) verified: more than etcd stores in one object (1.5 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 2 << 20;

/// A DSSE envelope (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// What the payload is ([`IN_TOTO_PAYLOAD_TYPE`]).
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// One signature per signing key.
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signing key's id (see [`VerifyingKey::key_id`]); a hint, not trusted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// The signature over `PAE(payloadType, payload)`, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Sign `body` as `payload_type` with `key`.
    pub fn sign(
        payload_type: &str,
        body: &[u8],
        key: &SigningKey,
    ) -> Result<Envelope, AttestError> {
        let sig = key.sign(&pae(payload_type, body))?;
        Ok(Envelope {
            payload_type: payload_type.into(),
            payload: B64.encode(body),
            signatures: vec![Signature {
                keyid: key.verifying_key().key_id(),
                sig: B64.encode(sig),
            }],
        })
    }

    /// The payload, decoded, without checking any signature (for messages about an envelope
    /// already verified, never for trusting one).
    pub fn payload_unverified(&self) -> Result<Vec<u8>, AttestError> {
        B64.decode(&self.payload)
            .map_err(|_| AttestError::Malformed("the payload is not base64".into()))
    }

    /// The payload, if one of `trusted` made one of the signatures; with the key that did.
    pub fn verify<'k>(
        &self,
        trusted: &'k [VerifyingKey],
    ) -> Result<(Vec<u8>, &'k VerifyingKey), AttestError> {
        // Bounded before any signature is checked: the work is signatures × keys.
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(AttestError::Malformed(format!(
                "{} signatures, more than the {MAX_SIGNATURES} an attestation may carry: refused unchecked",
                self.signatures.len()
            )));
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(AttestError::Malformed(format!(
                "a {} KiB payload, more than the {} KiB an attestation may carry: refused unchecked",
                self.payload.len() / 1024,
                MAX_PAYLOAD_BYTES / 1024
            )));
        }
        let body = B64
            .decode(&self.payload)
            .map_err(|_| AttestError::Malformed("the payload is not base64".into()))?;
        let message = pae(&self.payload_type, &body);
        for s in &self.signatures {
            let Ok(sig) = B64.decode(&s.sig) else {
                continue;
            };
            // The key id only orders the search; every trusted key may be tried.
            let mut keys: Vec<&VerifyingKey> = trusted.iter().collect();
            keys.sort_by_key(|k| k.key_id() != s.keyid);
            if let Some(k) = keys.into_iter().find(|k| k.verify(&message, &sig)) {
                return Ok((body, k));
            }
        }
        let ids: Vec<&str> = self
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .filter(|id| !id.is_empty())
            .collect();
        Err(AttestError::Untrusted(if ids.is_empty() {
            String::new()
        } else {
            format!(" (signed by key {})", ids.join(", "))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::keys::Algorithm;

    #[test]
    fn pae_is_as_the_specification_spells_it() {
        // The DSSE protocol document's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn an_envelope_verifies_with_its_key_only_and_not_once_changed() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let key = SigningKey::generate(alg).unwrap();
            let other = SigningKey::generate(alg).unwrap();
            let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"a\":1}", &key).unwrap();
            let trusted = [other.verifying_key(), key.verifying_key()];
            let (body, by) = env.verify(&trusted).unwrap();
            assert_eq!(body, b"{\"a\":1}");
            assert_eq!(by.key_id(), key.verifying_key().key_id());
            assert!(matches!(
                env.verify(&[other.verifying_key()]),
                Err(AttestError::Untrusted(_))
            ));
            let mut changed = env.clone();
            changed.payload = B64.encode(b"{\"a\":2}");
            assert!(changed.verify(&[key.verifying_key()]).is_err());
            let mut retyped = env.clone();
            retyped.payload_type = "text/plain".into();
            assert!(retyped.verify(&[key.verifying_key()]).is_err());
        }
    }

    /// Thousands of junk signatures once stalled the webhook's I/O thread for seconds per
    /// Attestation: more than [`MAX_SIGNATURES`] is refused before any is checked.
    #[test]
    fn too_many_signatures_are_refused_unchecked() {
        let key = SigningKey::generate(Algorithm::EcdsaP256).unwrap();
        let mut env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{}", &key).unwrap();
        let trusted = [key.verifying_key()];
        assert!(env.verify(&trusted).is_ok());
        let junk = Signature {
            keyid: String::new(),
            sig: B64.encode([7u8; 64]),
        };
        env.signatures.splice(0..0, std::iter::repeat_n(junk, 4900));
        let e = env.verify(&trusted).unwrap_err().to_string();
        assert!(e.contains("4901 signatures, more than the 16"), "{e}");
        env.signatures.drain(..4900 - 15);
        assert_eq!(env.signatures.len(), 16);
        assert!(env.verify(&trusted).is_ok());
    }
}
