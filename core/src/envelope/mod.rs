//! Value envelopes: how one secret value becomes one base64 string in `encryptedData`.
//!
//! Two formats live side by side (DESIGN §3):
//! - [`kubeseal`]: byte-compatible with Bitnami Sealed Secrets (RSA-OAEP-SHA256 + AES-256-GCM);
//!   the scope is bound through the OAEP label.
//! - [`age`]: an age file to one or more X25519 recipients whose plaintext starts with a binding
//!   line naming scope, namespace, name and item, checked on unseal.
//!
//! A value is recognised as age by its header after base64 decoding; anything else is kubeseal.

pub mod age;
pub mod kubeseal;
pub mod pq;

use std::fmt;
use std::str::FromStr;

/// Where a sealed value may be unsealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Only in this namespace, under this name (and, for age, this item).
    #[default]
    Strict,
    /// Under any name in this namespace.
    NamespaceWide,
    /// Anywhere in the cluster.
    ClusterWide,
}

impl Scope {
    /// Every scope, strictest first.
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The scope as annotations and flags spell it (`strict`, `namespace-wide`, `cluster-wide`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name other than strict, namespace-wide or cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: expected strict, namespace-wide or cluster-wide")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        match s {
            "strict" | "" => Ok(Scope::Strict),
            "namespace-wide" => Ok(Scope::NamespaceWide),
            "cluster-wide" => Ok(Scope::ClusterWide),
            other => Err(UnknownScope(other.to_string())),
        }
    }
}

/// The two envelope formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// sealgate's age format: X25519 recipients, the binding in the header.
    Age,
    /// Bitnami's format: RSA-OAEP-SHA256 + AES-256-GCM, the binding in the OAEP label.
    Kubeseal,
}

impl Format {
    /// The format as `--format` spells it (`age`, `kubeseal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Age => "age",
            Format::Kubeseal => "kubeseal",
        }
    }

    /// Which format a decoded value is in.
    pub fn detect(decoded: &[u8]) -> Format {
        if age::is_age(decoded) {
            Format::Age
        } else {
            Format::Kubeseal
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a sealed value is bound to: the object it lives in and its item name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// Where the value may be opened.
    pub scope: Scope,
    /// The object's namespace (bound unless the scope is cluster-wide).
    pub namespace: &'a str,
    /// The object's name (bound in strict scope).
    pub name: &'a str,
    /// The item key in `encryptedData`.
    pub item: &'a str,
}

impl Binding<'_> {
    /// kubeseal's OAEP label (`EncryptionLabel` upstream): `ns/name`, `ns` or empty.
    /// The item is not bound in this format.
    pub fn oaep_label(&self) -> Vec<u8> {
        match self.scope {
            Scope::Strict => format!("{}/{}", self.namespace, self.name).into_bytes(),
            Scope::NamespaceWide => self.namespace.as_bytes().to_vec(),
            Scope::ClusterWide => Vec::new(),
        }
    }

    /// The first line of an age value's plaintext (DESIGN §3.2), newline included.
    pub fn age_line(&self) -> String {
        let (ns, name, item) = match self.scope {
            Scope::Strict => (self.namespace, self.name, self.item),
            Scope::NamespaceWide => (self.namespace, "*", "*"),
            Scope::ClusterWide => ("*", "*", "*"),
        };
        format!(
            "{AGE_LINE_PREFIX} scope={} ns={ns} name={name} key={item}\n",
            self.scope
        )
    }

    /// How this binding reads in an error message.
    pub fn describe(&self) -> String {
        match self.scope {
            Scope::Strict => format!(
                "item {:?} of {}/{} (strict scope)",
                self.item, self.namespace, self.name
            ),
            Scope::NamespaceWide => {
                format!("namespace {:?} (namespace-wide scope)", self.namespace)
            }
            Scope::ClusterWide => "any namespace (cluster-wide scope)".to_string(),
        }
    }
}

pub(crate) const AGE_LINE_PREFIX: &str = "sealgate/v1";

/// Errors from sealing or opening one value. None of them carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The value is not base64.
    #[error("not valid base64 ({0})")]
    Base64(#[from] base64::DecodeError),
    /// The value has a space or tab, which the controllers' base64 decoder (Go's
    /// `base64.StdEncoding`, as Bitnami's) refuses, so the cluster would refuse it too.
    #[error(
        "not valid base64: a space or tab at byte {at}, which the controller's decoder refuses (as Bitnami's does: `illegal base64 data`); remove it"
    )]
    Whitespace {
        /// Byte offset of the first space or tab.
        at: usize,
    },
    /// The bytes do not have the kubeseal layout (lengths, parts).
    #[error("malformed kubeseal value: {0}")]
    Malformed(String),
    /// The bytes are not a binary age file sealgate can read.
    #[error("malformed age value: {0}")]
    MalformedAge(String),
    /// No key in the ring opened the value. For the kubeseal format a wrong key and a wrong
    /// namespace/name/scope are indistinguishable (both fail the OAEP label check).
    #[error("no sealing key could decrypt this value (tried {tried} key(s)): {hint}")]
    NoKey {
        /// Keys tried.
        tried: usize,
        /// What usually causes it, for this format.
        hint: &'static str,
    },
    /// The ciphertext was changed: AES-GCM or ChaCha20-Poly1305 authentication failed.
    #[error("the value was altered after sealing (authentication tag mismatch)")]
    Tampered,
    /// The value opened but was sealed for another place (age: the header binding differs).
    #[error(
        "this value is sealed for {sealed}, but it sits in {expected}: sealed values cannot be moved between objects, namespaces or items; seal it again for its new place"
    )]
    BindingMismatch {
        /// The place the value was sealed for.
        sealed: String,
        /// The place it sits in.
        expected: String,
    },
    /// The object would cost more private-key operations than its budget
    /// ([`crate::keys::ring::KeyBudget`]): its values were not sealed with this ring's keys.
    #[error(
        "opening it needs more private-key work than its budget ({limit} units: one key attempt per item plus two searches of the key ring): its values were not sealed with these keys"
    )]
    Budget {
        /// The object's budget.
        limit: usize,
    },
    /// There is nothing to seal to (no RSA key for kubeseal, no age recipient for age).
    #[error("no recipient to seal to: {0}")]
    NoRecipient(String),
    /// The encryption library failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

pub(crate) const KUBESEAL_NOKEY_HINT: &str = "it was sealed for another cluster or key, or for another namespace, name or scope (the kubeseal format binds namespace/name through its OAEP label)";
pub(crate) const AGE_NOKEY_HINT: &str =
    "none of its recipients is a key in this key ring: it was sealed for another cluster or key";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_upstream_encryption_label() {
        let b = |scope| Binding {
            scope,
            namespace: "myns",
            name: "myname",
            item: "k",
        };
        // sealed-secrets TestEncryptionLabel: strict is "ns/name", not a concatenation.
        assert_eq!(b(Scope::Strict).oaep_label(), b"myns/myname");
        assert_eq!(b(Scope::NamespaceWide).oaep_label(), b"myns");
        assert_eq!(b(Scope::ClusterWide).oaep_label(), b"");
    }

    #[test]
    fn age_lines() {
        let b = |scope| Binding {
            scope,
            namespace: "prod",
            name: "db",
            item: "password",
        };
        assert_eq!(
            b(Scope::Strict).age_line(),
            "sealgate/v1 scope=strict ns=prod name=db key=password\n"
        );
        assert_eq!(
            b(Scope::NamespaceWide).age_line(),
            "sealgate/v1 scope=namespace-wide ns=prod name=* key=*\n"
        );
        assert_eq!(
            b(Scope::ClusterWide).age_line(),
            "sealgate/v1 scope=cluster-wide ns=* name=* key=*\n"
        );
    }

    #[test]
    fn scope_parsing() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
        }
        assert!(
            "wide"
                .parse::<Scope>()
                .unwrap_err()
                .to_string()
                .contains("strict")
        );
    }
}
