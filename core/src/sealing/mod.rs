//! `seal`, `unseal`, `reseal` and `validate` as pure functions over the object model.

use std::collections::BTreeSet;

use base64::Engine as _;

use crate::envelope::age::AgeRecipient;
use crate::envelope::{Binding, Format, Scope, SealError, kubeseal};
use crate::keys::ring::KeyBudget;
use crate::keys::{KeyId, KeyRing, PublicKey};
pub use crate::objects::{ApiGroup, ModelError, ObjectMeta, SealedSecret, Secret, SecretTemplate};
use crate::objects::{
    BITNAMI_CLUSTER_WIDE, BITNAMI_NAMESPACE_WIDE, KEY_ID_ANNOTATION, SCOPE_ANNOTATION,
    check_item_key, decode_sealed_value, scope_from_annotations,
};

/// The public keys values are sealed to.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The RSA key for the kubeseal format.
    pub rsa: Option<PublicKey>,
    /// Every age recipient (the cluster's and any extra ones).
    pub age: Vec<AgeRecipient>,
}

impl Target {
    /// A cluster's public key plus extra age recipients (other clusters, a recovery key). The
    /// cluster's hybrid post-quantum recipient when its key has one, else its X25519 one.
    pub fn new(key: &PublicKey, extra_age: &[AgeRecipient]) -> Target {
        Target::with(key, extra_age, true)
    }

    /// [`Target::new`], choosing the cluster's recipient type: post-quantum when `pq` and the key
    /// has one, else X25519 (`seal --pq=false`, for readers without the hybrid type).
    pub fn with(key: &PublicKey, extra_age: &[AgeRecipient], pq: bool) -> Target {
        let own = match key.pq_recipient() {
            Some(r) if pq => Some(AgeRecipient::Pq(r.clone())),
            _ => key.age_recipient().cloned().map(AgeRecipient::X25519),
        };
        let mut age: Vec<AgeRecipient> = own.into_iter().collect();
        for r in extra_age {
            if !age.contains(r) {
                age.push(r.clone());
            }
        }
        Target {
            rsa: Some(key.clone()),
            age,
        }
    }
}

impl Target {
    /// Seal one value in `format`, bound to `binding`; returns base64.
    pub fn seal_value(
        &self,
        format: Format,
        binding: &Binding<'_>,
        value: &[u8],
    ) -> Result<String, SealError> {
        let raw = match format {
            Format::Kubeseal => {
                let key = self.rsa.as_ref().ok_or_else(|| {
                    SealError::NoRecipient("the kubeseal format needs an RSA certificate".into())
                })?;
                kubeseal::seal(&key.oaep(), &binding.oaep_label(), value)?
            }
            Format::Age => crate::envelope::age::seal(&self.age, binding, value)?,
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// How to seal a Secret.
#[derive(Debug, Clone)]
pub struct SealOptions {
    /// The envelope for every value.
    pub format: Format,
    /// `None`: from the input's scope annotations, else strict (kubeseal's behaviour).
    pub scope: Option<Scope>,
    /// The SealedSecret's API group.
    pub api: ApiGroup,
    /// Seal a Secret without data (`--allow-empty-data`; refused otherwise, as kubeseal does).
    pub allow_empty_data: bool,
    /// `-n`: used when the Secret has none; an error when it has another.
    pub namespace: Option<String>,
    /// `--name`: overrides the Secret's name.
    pub name: Option<String>,
}

impl Default for SealOptions {
    fn default() -> Self {
        SealOptions {
            format: Format::Age,
            scope: None,
            api: ApiGroup::Sealgate,
            allow_empty_data: false,
            namespace: None,
            name: None,
        }
    }
}

/// Why a Secret could not be sealed. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SealSecretError {
    /// The Secret is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The Secret cannot be sealed as asked (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// One item could not be sealed.
    #[error("item {item:?}: {source}")]
    Value {
        /// The item key.
        item: String,
        /// Why.
        source: SealError,
    },
}

fn invalid(s: impl Into<String>) -> SealSecretError {
    SealSecretError::Invalid(s.into())
}

/// Seal a Secret into a SealedSecret (kubeseal's `NewSealedSecret`, plus sealgate's age format).
pub fn seal_secret(
    secret: &Secret,
    target: &Target,
    opts: &SealOptions,
) -> Result<SealedSecret, SealSecretError> {
    let name = opts
        .name
        .clone()
        .or_else(|| secret.meta.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing metadata.name in the input Secret (or pass --name)"))?;
    let namespace = match (secret.meta.namespace.as_deref(), opts.namespace.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(format!(
                "namespace mismatch: the input Secret is in namespace {a:?} but {b:?} was given"
            )));
        }
        (Some(a), _) => a.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) => String::new(),
    };
    let scope = match opts.scope {
        Some(s) => s,
        None => scope_of_input(secret)?,
    };
    if namespace.is_empty() && scope != Scope::ClusterWide {
        return Err(invalid(format!(
            "the Secret has no namespace: set metadata.namespace or pass -n/--namespace ({scope} scope binds it), or seal with --scope cluster-wide"
        )));
    }
    if secret.data.is_empty() && !opts.allow_empty_data {
        return Err(invalid(
            "the Secret has no data or stringData, assuming this is an error (pass --allow-empty-data to seal it anyway)",
        ));
    }
    // A Secret parsed from YAML has valid keys already; one built in code must not seal into an
    // object that no reader (ours included) accepts.
    for item in secret.data.keys() {
        check_item_key(item).map_err(|e| invalid(format!("item {item:?}: {e}")))?;
    }
    if opts.api == ApiGroup::Bitnami && opts.format == Format::Age {
        return Err(invalid(
            "Bitnami's controller cannot open age values: use --value-format kubeseal with bitnami.com output",
        ));
    }

    let mut template_meta = secret.meta.clone();
    template_meta.strip_server_fields();
    // Name and namespace come from the SealedSecret (upstream ignores the template's), and the
    // scope lives only on the top level: a second, possibly disagreeing copy is how
    // CVE-2026-22728 widened scopes.
    template_meta.name = None;
    template_meta.namespace = None;
    for a in [
        SCOPE_ANNOTATION,
        BITNAMI_NAMESPACE_WIDE,
        BITNAMI_CLUSTER_WIDE,
    ] {
        template_meta.annotations.remove(a);
    }

    let mut ss = SealedSecret {
        api: opts.api,
        meta: ObjectMeta {
            name: Some(name),
            namespace: (!namespace.is_empty()).then_some(namespace),
            ..ObjectMeta::default()
        },
        template: SecretTemplate {
            meta: template_meta,
            type_: secret.type_.clone(),
            immutable: secret.immutable,
            data: Default::default(),
        },
        ..SealedSecret::default()
    };
    ss.set_scope(scope);
    record_key_id(&mut ss, target);
    seal_items(&mut ss, secret, target, opts.format)?;
    Ok(ss)
}

/// Note which key the values are sealed to (see [`KEY_ID_ANNOTATION`]).
fn record_key_id(ss: &mut SealedSecret, target: &Target) {
    if let Some(k) = &target.rsa {
        ss.meta
            .annotations
            .insert(KEY_ID_ANNOTATION.into(), k.id().short());
    }
}

/// The key to try first: the one the key-id annotation names, if the ring has it.
fn key_hint(ss: &SealedSecret, ring: &KeyRing) -> Option<KeyId> {
    ss.meta
        .annotations
        .get(KEY_ID_ANNOTATION)
        .and_then(|id| ring.find(id))
}

/// The scope an input Secret asks for through annotations (sealgate's, else Bitnami's).
fn scope_of_input(secret: &Secret) -> Result<Scope, ModelError> {
    if secret.meta.annotations.contains_key(SCOPE_ANNOTATION) {
        scope_from_annotations(ApiGroup::Sealgate, &secret.meta.annotations)
    } else {
        scope_from_annotations(ApiGroup::Bitnami, &secret.meta.annotations)
    }
}

fn seal_items(
    ss: &mut SealedSecret,
    secret: &Secret,
    target: &Target,
    format: Format,
) -> Result<(), SealSecretError> {
    let scope = ss.scope()?;
    let (ns, name) = (ss.namespace().to_string(), ss.name().to_string());
    for (item, value) in &secret.data {
        let binding = Binding {
            scope,
            namespace: &ns,
            name: &name,
            item,
        };
        let sealed = target
            .seal_value(format, &binding, value.expose())
            .map_err(|source| SealSecretError::Value {
                item: item.clone(),
                source,
            })?;
        ss.encrypted_data.insert(item.clone(), sealed);
    }
    if ss.encrypted_data.len() > crate::objects::MAX_ITEMS {
        return Err(invalid(format!(
            "more than {} items",
            crate::objects::MAX_ITEMS
        )));
    }
    Ok(())
}

/// `--merge-into`: seal the Secret's items into an existing SealedSecret, using its name,
/// namespace and scope; template labels and annotations are merged in.
pub fn merge_into(
    existing: &mut SealedSecret,
    secret: &Secret,
    target: &Target,
    format: Format,
) -> Result<(), SealSecretError> {
    if existing.api == ApiGroup::Bitnami && format == Format::Age {
        return Err(invalid(
            "the target is a bitnami.com SealedSecret, whose controller cannot open age values: use --value-format kubeseal",
        ));
    }
    let mut meta = secret.meta.clone();
    meta.strip_server_fields();
    for a in [
        SCOPE_ANNOTATION,
        BITNAMI_NAMESPACE_WIDE,
        BITNAMI_CLUSTER_WIDE,
    ] {
        meta.annotations.remove(a);
    }
    existing.template.meta.labels.extend(meta.labels);
    existing.template.meta.annotations.extend(meta.annotations);
    if secret.type_.is_some() {
        existing.template.type_ = secret.type_.clone();
    }
    record_key_id(existing, target);
    seal_items(existing, secret, target, format)
}

/// The format every value of `ss` is in, if they share one (for `seal --merge-into`, which
/// keeps a file's format); `None` when it has none, or mixes them.
pub fn values_format(ss: &SealedSecret) -> Option<Format> {
    let mut formats = ss
        .encrypted_data
        .values()
        .map(|v| decode_sealed_value(v).ok().map(|raw| Format::detect(&raw)));
    let first = formats.next()??;
    formats.all(|f| f == Some(first)).then_some(first)
}

/// The result of unsealing one SealedSecret.
#[derive(Debug)]
pub struct Unsealed {
    /// The Secret, with every value opened.
    pub secret: Secret,
    /// The keys that opened the values.
    pub keys_used: BTreeSet<KeyId>,
    /// The envelopes the values were in (`age`, `kubeseal`).
    pub formats: BTreeSet<&'static str>,
    /// Private-key operations spent.
    pub attempts: usize,
}

/// Why a SealedSecret could not be unsealed. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The SealedSecret is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// It uses something sealgate does not implement (Bitnami's Go-template `data`).
    #[error("{0}")]
    Unsupported(String),
    /// Items could not be opened; the object is all or nothing.
    #[error("{}", describe_item_errors(.failed, *.total, *.untried))]
    Items {
        /// The items that failed, each with why.
        failed: Vec<(String, SealError)>,
        /// The object's item count.
        total: usize,
        /// Items left untried after the first failure (the object is all or nothing).
        untried: usize,
    },
}

fn describe_item_errors(failed: &[(String, SealError)], total: usize, untried: usize) -> String {
    let list: Vec<String> = failed
        .iter()
        .map(|(item, e)| format!("{item}: {e}"))
        .collect();
    let rest = if untried > 0 {
        format!(" ({untried} other item(s) not tried: the object is all or nothing)")
    } else {
        String::new()
    };
    format!(
        "{} of {} item(s) could not be unsealed: {}{rest}",
        failed.len(),
        total,
        list.join("; ")
    )
}

/// The binding context of a SealedSecret's items, checked for the fields its scope needs.
fn context(ss: &SealedSecret) -> Result<(Scope, String, String), ModelError> {
    let scope = ss.scope()?;
    let missing = |f: &str| ModelError::Field {
        field: format!("metadata.{f}"),
        problem: format!("missing ({scope} scope binds it)"),
    };
    if ss.name().is_empty() {
        return Err(missing("name"));
    }
    if ss.namespace().is_empty() && scope != Scope::ClusterWide {
        return Err(missing("namespace"));
    }
    Ok((scope, ss.namespace().to_string(), ss.name().to_string()))
}

/// Open every item at its place: all or nothing, so the first item that does not open ends it
/// (an object of garbage must not cost a private-key search per item).
fn open_items(
    ss: &SealedSecret,
    ring: &KeyRing,
) -> Result<Vec<(String, crate::keys::ring::Opened)>, UnsealError> {
    let (scope, ns, name) = context(ss)?;
    let total = ss.encrypted_data.len();
    let mut opened = Vec::with_capacity(total);
    let mut hint = key_hint(ss, ring);
    let mut budget = KeyBudget::for_object(total, ring);
    for (item, value) in &ss.encrypted_data {
        let binding = Binding {
            scope,
            namespace: &ns,
            name: &name,
            item,
        };
        match ring.open(value, &binding, &mut hint, &mut budget) {
            Ok(o) => opened.push((item.clone(), o)),
            Err(e) => {
                return Err(UnsealError::Items {
                    failed: vec![(item.clone(), e)],
                    total,
                    untried: total - opened.len() - 1,
                });
            }
        }
    }
    Ok(opened)
}

/// Check that every item opens at its place, without rendering or even looking at templates: a
/// verify endpoint that rendered templates gave Bitnami a one-bit decryption oracle (PR #2019).
pub fn verify(ss: &SealedSecret, ring: &KeyRing) -> Result<(), UnsealError> {
    open_items(ss, ring).map(|_| ())
}

/// Unseal into the Secret the controller would create (without its ownerReference).
/// All or nothing: one bad item fails the whole object and no value is returned.
pub fn unseal(ss: &SealedSecret, ring: &KeyRing) -> Result<Unsealed, UnsealError> {
    if ss.has_legacy_data {
        return Err(UnsealError::Unsupported(
            "spec.data (Bitnami's deprecated v1 format) is not supported: re-seal the Secret with `sealgate seal`".into(),
        ));
    }
    if !ss.template.data.is_empty() {
        return Err(UnsealError::Unsupported(
            "spec.template.data (Go templates) is not rendered by sealgate: move the rendered values into encryptedData".into(),
        ));
    }
    let opened = open_items(ss, ring)?;
    let mut meta = ss.template.meta.clone();
    meta.strip_server_fields();
    meta.name = Some(ss.name().to_string());
    meta.namespace = (!ss.namespace().is_empty()).then(|| ss.namespace().to_string());
    let mut out = Unsealed {
        secret: Secret {
            meta,
            type_: ss.template.type_.clone(),
            immutable: ss.template.immutable,
            data: Default::default(),
        },
        keys_used: BTreeSet::new(),
        formats: BTreeSet::new(),
        attempts: 0,
    };
    for (item, o) in opened {
        out.attempts += o.attempts;
        out.keys_used.insert(o.key);
        out.formats.insert(o.format.as_str());
        out.secret.data.insert(item, o.value);
    }
    Ok(out)
}

/// Re-encrypt every item to `target`, keeping the scope of the **top-level** metadata (never the
/// template's) and never rendering templates. `format: None` keeps each item's format.
pub fn reseal(
    ss: &SealedSecret,
    ring: &KeyRing,
    target: &Target,
    format: Option<Format>,
) -> Result<SealedSecret, UnsealError> {
    let opened = open_items(ss, ring)?;
    let (scope, ns, name) = context(ss)?;
    let mut out = ss.clone();
    record_key_id(&mut out, target);
    let mut failed = Vec::new();
    for (item, o) in opened {
        let binding = Binding {
            scope,
            namespace: &ns,
            name: &name,
            item: &item,
        };
        let f = format.unwrap_or(o.format);
        let result = if f == Format::Age && ss.api == ApiGroup::Bitnami {
            Err(SealError::NoRecipient(
                "a bitnami.com SealedSecret must stay in the kubeseal format".into(),
            ))
        } else {
            target.seal_value(f, &binding, o.value.expose())
        };
        match result {
            Ok(v) => {
                out.encrypted_data.insert(item, v);
            }
            Err(e) => failed.push((item, e)),
        }
    }
    if !failed.is_empty() {
        return Err(UnsealError::Items {
            failed,
            total: ss.encrypted_data.len(),
            untried: 0,
        });
    }
    Ok(out)
}

/// What `validate` found wrong with one SealedSecret. Empty means valid.
#[derive(Debug, Default)]
pub struct Validation {
    /// Each problem, for a person (names fields, never values).
    pub problems: Vec<String>,
    /// What public keys could not settle either way, for a person.
    pub notes: Vec<String>,
    /// Whether every value was decrypted (private keys were given).
    pub decrypted: bool,
}

/// Offline checks of a SealedSecret: metadata consistent with its scope, every value well-formed,
/// kubeseal values sized for one of `known` keys, age values with a recipient of a type one of
/// them has, and, given private keys, every value opened at its place (which also proves the key,
/// scope, namespace, name and item binding).
///
/// Without private keys neither the key nor the binding can be proven: kubeseal's OAEP label and
/// age's binding line are inside the encryption, age stanzas hold only an ephemeral share, and
/// the key-id annotation is an unauthenticated hint. Passing means "fits", not "sealed to".
pub fn validate(ss: &SealedSecret, known: &[PublicKey], ring: Option<&KeyRing>) -> Validation {
    let mut v = Validation::default();
    let p = &mut v.problems;
    let ctx = match context(ss) {
        Ok(c) => Some(c),
        Err(e) => {
            p.push(e.to_string());
            None
        }
    };
    if ss.has_legacy_data {
        p.push("spec.data: Bitnami's deprecated v1 format; re-seal it".into());
    }
    if ss.encrypted_data.is_empty() {
        p.push("spec.encryptedData is empty".into());
    }
    let tm = &ss.template.meta;
    for (field, tv, top) in [
        ("name", &tm.name, &ss.meta.name),
        ("namespace", &tm.namespace, &ss.meta.namespace),
    ] {
        if let Some(t) = tv
            && Some(t) != top.as_ref()
        {
            p.push(format!(
                "spec.template.metadata.{field} differs from metadata.{field}: the unsealed Secret always takes the SealedSecret's"
            ));
        }
    }
    if let Some((scope, _, _)) = ctx {
        let tscope = scope_from_annotations(ss.api, &tm.annotations);
        let has_scope_annotation = [
            SCOPE_ANNOTATION,
            BITNAMI_NAMESPACE_WIDE,
            BITNAMI_CLUSTER_WIDE,
        ]
        .iter()
        .any(|a| tm.annotations.contains_key(*a));
        if has_scope_annotation && tscope.as_ref().ok() != Some(&scope) {
            p.push(format!(
                "spec.template.metadata.annotations ask for a different scope than metadata.annotations ({scope}); only the top level counts"
            ));
        }
    }
    // How many recipients the value with the most has: above one, extra recipients (seal -r/-R)
    // could be the given keys even where the key-id annotation names another.
    let mut most_recipients = 0;
    for (item, value) in &ss.encrypted_data {
        if let Err(e) = check_item_key(item) {
            p.push(format!("spec.encryptedData.{item}: {e}"));
            continue;
        }
        match check_value_shape(ss.api, value, known) {
            Ok(n) => most_recipients = most_recipients.max(n),
            Err(e) => p.push(format!("spec.encryptedData.{item}: {e}")),
        }
    }
    // The annotation is an unauthenticated hint that names the primary key only.
    if let Some(id) = ss.meta.annotations.get(KEY_ID_ANNOTATION)
        && !known.is_empty()
        && !known.iter().any(|k| k.id().matches(id))
    {
        if most_recipients > 1 {
            v.notes.push(format!(
                "{KEY_ID_ANNOTATION} names key {id}, none of the given keys; the values have {most_recipients} recipients, so a given key may be an extra one"
            ));
        } else {
            p.push(format!(
                "sealed with key {id} ({KEY_ID_ANNOTATION}), which is none of the given public keys: it was sealed for another cluster or with a stale certificate"
            ));
        }
    }
    if let (Some(ring), true) = (ring, p.is_empty()) {
        match unseal(ss, ring) {
            Ok(_) => v.decrypted = true,
            Err(e) => p.push(e.to_string()),
        }
    }
    v
}

/// Check one value's shape against the given keys; returns how many recipients it has.
fn check_value_shape(api: ApiGroup, value: &str, known: &[PublicKey]) -> Result<usize, String> {
    let raw = decode_sealed_value(value).map_err(|e| e.to_string())?;
    match Format::detect(&raw) {
        Format::Kubeseal => {
            let parts = kubeseal::parse(&raw).map_err(|e| e.to_string())?;
            let bits = parts.rsa.len() * 8;
            if !known.is_empty() && !known.iter().any(|k| k.rsa_bits() == bits) {
                return Err(format!(
                    "sealed with a {bits}-bit RSA key, but none of the given public keys is {bits}-bit: it was sealed for another cluster"
                ));
            }
            Ok(1)
        }
        Format::Age => {
            if api == ApiGroup::Bitnami {
                return Err("an age value in a bitnami.com SealedSecret, which Bitnami's controller cannot open".into());
            }
            // Bounded first: what the bounds refuse never reaches the age crate's parser.
            let header = crate::envelope::age::header(&raw).map_err(|e| e.to_string())?;
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(&raw[..]))
                .map_err(|e| format!("malformed age value ({e})"))?;
            let types: Vec<&str> = header.recipients().collect();
            if known.is_empty() {
                return Ok(types.len());
            }
            // The stanza types the given keys' recipients would write.
            let fits = |t: &str| {
                known.iter().any(|k| {
                    (t == crate::envelope::pq::STANZA_TAG && k.pq_recipient().is_some())
                        || (t == crate::envelope::age::X25519_STANZA_TAG
                            && k.age_recipient().is_some())
                })
            };
            if !types.iter().any(|t| fits(t)) {
                return Err(if known.iter().all(|k| k.age_recipient().is_none()) {
                    "an age value, but none of the given public keys has an age recipient (keys imported from Bitnami open kubeseal values only)".to_string()
                } else {
                    format!(
                        "its recipients are of type {}, which none of the given public keys has: it was sealed for another key",
                        types.join(", ")
                    )
                });
            }
            Ok(types.len())
        }
    }
}

#[cfg(test)]
mod tests;
