//! Self-contained TLS (`--self-signed-tls`): the webhook keeps its own CA and serving certificate
//! in one Secret of its namespace, writes the serving pair to the files the server reads, and
//! keeps the `caBundle` of its ValidatingWebhookConfiguration equal to that CA.
//!
//! Every replica runs the same loop. The first to find no Secret creates it (another replica's
//! create then gets 409 and reads the winner's). The serving certificate is renewed, under the
//! same CA, when it has less than a third of its life left or its names changed; a CA change
//! would break admission until the caBundle follows, so the CA (10 years) is never replaced
//! automatically.
//!
//! The webhook configuration is watched, not polled: a `kubectl delete` + `apply`, a Helm
//! reinstall or a replace sync re-creates it without a caBundle, and every admission it governs
//! fails (`x509: certificate signed by unknown authority`) until the caBundle is back. A poll
//! left that window open for up to its period; the watch closes it within one round trip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[derive(Debug, Clone)]
pub struct SelfTlsConfig {
    pub namespace: String,
    /// The Secret holding `ca.crt`, `ca.key`, `tls.crt`, `tls.key`.
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept current.
    pub webhook_config: String,
    /// The Service the API server calls: the certificate's DNS names derive from it.
    pub service: String,
    /// More names for the certificate (`--tls-san`): IP addresses or DNS names, for a webhook the
    /// API server reaches by `url:` (outside the cluster, or on loopback in the test tier).
    pub extra_names: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfTlsError {
    #[error("Kubernetes API ({what}): {source}")]
    Api { what: String, source: kube::Error },
    #[error("cannot make the webhook certificate: {0}")]
    Cert(String),
    #[error("the Secret {0} is not a usable CA and certificate: {1}")]
    Invalid(String, String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// The PEM files in the Secret; the private keys are wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    ca_key: Zeroizing<String>,
    pub cert: String,
    key: Zeroizing<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material").finish_non_exhaustive()
    }
}

const CA_VALIDITY_DAYS: i64 = 3650;
const SERVING_VALIDITY_DAYS: i64 = 365;

fn cert_err(e: rcgen::Error) -> SelfTlsError {
    SelfTlsError::Cert(e.to_string())
}

/// The names the API server may use for `service` in `namespace`.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

impl SelfTlsConfig {
    /// Every name the serving certificate holds: the Service's, then `--tls-san`'s.
    pub fn names(&self) -> Vec<String> {
        let mut names = dns_names(&self.service, &self.namespace);
        for n in &self.extra_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }
}

/// `--tls-san`: an IP address or a DNS name (RFC 1123 labels, optionally a leading `*.`).
pub fn parse_san(s: &str) -> Result<String, String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(s.to_string());
    }
    let host = s.strip_prefix("*.").unwrap_or(s);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.len() <= 253 && host.split('.').all(label_ok) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is neither an IP address nor a DNS name (e.g. 10.0.0.5 or webhook.example.com)"
        ))
    }
}

fn serving(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    now: OffsetDateTime,
) -> Result<(String, Zeroizing<String>), SelfTlsError> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(names).map_err(cert_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "sealgate-webhook");
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(SERVING_VALIDITY_DAYS);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, issuer).map_err(cert_err)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// A new CA and a serving certificate signed by it.
pub fn generate(names: Vec<String>, now: OffsetDateTime) -> Result<Material, SelfTlsError> {
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sealgate-webhook-ca");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
    let ca_key_pem = Zeroizing::new(ca_key.serialize_pem());
    let issuer = Issuer::new(ca, ca_key);
    let (cert, key) = serving(&issuer, names, now)?;
    Ok(Material {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// The serving certificate's validity and names (DNS names and IP addresses), sorted.
fn inspect(cert_pem: &str) -> Option<(OffsetDateTime, OffsetDateTime, Vec<String>)> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let der = pem::parse(cert_pem).ok()?;
    let (_, cert) = X509Certificate::from_der(der.contents()).ok()?;
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    GeneralName::IPAddress(b) => ip_string(b),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Some((
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
        names,
    ))
}

fn ip_string(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).to_string()),
        _ => None,
    }
}

/// Whether the serving certificate must be reissued: unreadable, other names, or less than a
/// third of its validity left.
pub fn needs_renewal(m: &Material, names: &[String], now: OffsetDateTime) -> bool {
    let mut want: Vec<String> = names.to_vec();
    want.sort();
    match inspect(&m.cert) {
        Some((from, until, have)) => have != want || now >= until - (until - from) / 3,
        None => true,
    }
}

/// A new serving certificate under the CA of `m`.
pub fn renew(
    m: &Material,
    names: Vec<String>,
    now: OffsetDateTime,
) -> Result<Material, SelfTlsError> {
    let key = KeyPair::from_pem(&m.ca_key).map_err(cert_err)?;
    let issuer = Issuer::from_ca_cert_pem(&m.ca_cert, key).map_err(cert_err)?;
    let (cert, key) = serving(&issuer, names, now)?;
    Ok(Material {
        cert,
        key,
        ..m.clone()
    })
}

fn to_secret(m: &Material, cfg: &SelfTlsConfig, resource_version: Option<String>) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("ca.crt", &m.ca_cert),
        ("ca.key", &m.ca_key),
        ("tls.crt", &m.cert),
        ("tls.key", &m.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let mut s = Secret {
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    };
    s.metadata.name = Some(cfg.secret.clone());
    s.metadata.namespace = Some(cfg.namespace.clone());
    s.metadata.resource_version = resource_version;
    s.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "sealgate-webhook".to_string(),
        )]
        .into(),
    );
    s
}

fn from_secret(s: &Secret, name: &str) -> Result<Material, SelfTlsError> {
    let item = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| SelfTlsError::Invalid(name.into(), format!("no {k}")))
    };
    Ok(Material {
        ca_cert: item("ca.crt")?,
        ca_key: Zeroizing::new(item("ca.key")?),
        cert: item("tls.crt")?,
        key: Zeroizing::new(item("tls.key")?),
    })
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SelfTlsError {
    let what = what.into();
    move |source| SelfTlsError::Api { what, source }
}

/// One pass: the Secret exists and is current, the files hold its serving pair, the caBundle is
/// its CA. Returns the material in use.
pub async fn ensure(client: &kube::Client, cfg: &SelfTlsConfig) -> Result<Material, SelfTlsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cfg.namespace);
    let names = cfg.names();
    let now = OffsetDateTime::now_utc();
    let what = format!("Secret {}/{}", cfg.namespace, cfg.secret);
    let material = match secrets.get_opt(&cfg.secret).await.map_err(api_err(&what))? {
        None => {
            let m = generate(names, now)?;
            match secrets
                .create(&PostParams::default(), &to_secret(&m, cfg, None))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %what, "created the webhook CA and serving certificate");
                    m
                }
                // Another replica was first: use its.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let s = secrets.get(&cfg.secret).await.map_err(api_err(&what))?;
                    from_secret(&s, &what)?
                }
                Err(e) => return Err(api_err(&what)(e)),
            }
        }
        Some(s) => {
            let m = from_secret(&s, &what)?;
            if needs_renewal(&m, &names, now) {
                let renewed = renew(&m, names, now)?;
                // The resourceVersion makes a concurrent renewal a 409: the next pass reads it.
                secrets
                    .replace(
                        &cfg.secret,
                        &PostParams::default(),
                        &to_secret(&renewed, cfg, s.metadata.resource_version.clone()),
                    )
                    .await
                    .map_err(api_err(&what))?;
                tracing::info!(secret = %what, "renewed the webhook serving certificate");
                renewed
            } else {
                m
            }
        }
    };
    write_if_changed(&cfg.cert_path, material.cert.as_bytes(), 0o644)?;
    write_if_changed(&cfg.key_path, material.key.as_bytes(), 0o600)?;
    sync_ca_bundle(client, &cfg.webhook_config, &material.ca_cert).await?;
    Ok(material)
}

fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SelfTlsError> {
    // The old file may be the private key: wiped after the comparison.
    if std::fs::read(path).is_ok_and(|old| *Zeroizing::new(old) == bytes) {
        return Ok(());
    }
    sealgate_core::fsutil::write_atomic(path, bytes, Some(mode))
        .map_err(|e| SelfTlsError::Write(path.to_path_buf(), e))
}

/// Set every webhook's `clientConfig.caBundle` to `ca_pem` where it differs. A strategic merge
/// patch: `webhooks` merges by name, so only caBundle is written and a reordered list is fine.
async fn sync_ca_bundle(
    client: &kube::Client,
    name: &str,
    ca_pem: &str,
) -> Result<(), SelfTlsError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let what = format!("ValidatingWebhookConfiguration {name}");
    let Some(vwc) = api.get_opt(name).await.map_err(api_err(&what))? else {
        tracing::warn!(webhook_config = %name, "the webhook configuration does not exist yet; its caBundle will be set when it does");
        return Ok(());
    };
    let want = ByteString(ca_pem.as_bytes().to_vec());
    let stale: Vec<serde_json::Value> = vwc
        .webhooks
        .iter()
        .flatten()
        .filter(|w| w.client_config.ca_bundle.as_ref() != Some(&want))
        .map(|w| serde_json::json!({"name": w.name, "clientConfig": {"caBundle": want}}))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Strategic(serde_json::json!({ "webhooks": stale })),
    )
    .await
    .map_err(api_err(&what))?;
    tracing::info!(webhook_config = %name, "set the caBundle");
    Ok(())
}

/// [`ensure`], retried with backoff (0.5 s doubling to 30 s) until it succeeds: the server cannot
/// start without its certificate, and the API server may not answer yet.
pub async fn ensure_until_ready(client: &kube::Client, cfg: &SelfTlsConfig) -> Material {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match ensure(client, cfg).await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!(error = %e, "self-contained TLS not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        }
    }
}

/// Re-check every `every` (renewal, a replaced Secret) and whenever the webhook configuration
/// changes in a way that leaves a caBundle other than `ca_pem`, the CA in use (a re-create is
/// repaired at once), until `shutdown`. Errors are logged and retried.
pub async fn run(
    client: kube::Client,
    cfg: SelfTlsConfig,
    ca_pem: String,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    tokio::pin!(shutdown);
    // Only this configuration: RBAC grants list/watch on it by name, which a list or watch may
    // use with this field selector.
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let changes = watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={}", cfg.webhook_config)),
    )
    .default_backoff()
    .applied_objects();
    tokio::pin!(changes);
    let mut ca = ByteString(ca_pem.into_bytes());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            change = changes.next() => match change {
                // Our own caBundle patch comes back as a change too: nothing to do for it.
                Some(Ok(vwc)) if has_ca_bundle(&vwc, &ca) => continue,
                Some(Ok(_)) => {
                    tracing::info!(webhook_config = %cfg.webhook_config, "the webhook configuration changed and lacks the CA; restoring the caBundle");
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, webhook_config = %cfg.webhook_config, "cannot watch the webhook configuration; retrying");
                    continue;
                }
                None => {}
            },
            _ = &mut shutdown => return,
        }
        match ensure(&client, &cfg).await {
            Ok(m) => ca = ByteString(m.ca_cert.into_bytes()),
            Err(e) => tracing::warn!(error = %e, "self-contained TLS check failed; retrying"),
        }
    }
}

/// Whether every webhook of `vwc` trusts `ca`.
fn has_ca_bundle(vwc: &ValidatingWebhookConfiguration, ca: &ByteString) -> bool {
    vwc.webhooks
        .iter()
        .flatten()
        .all(|w| w.client_config.ca_bundle.as_ref() == Some(ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_timing_and_names() {
        let names = dns_names("sealgate-webhook", "sealgate-system");
        let now = OffsetDateTime::now_utc();
        let m = generate(names.clone(), now).unwrap();
        assert!(!needs_renewal(&m, &names, now));
        assert!(!needs_renewal(&m, &names, now + time::Duration::days(200)));
        assert!(
            needs_renewal(&m, &names, now + time::Duration::days(250)),
            "a third left"
        );
        assert!(needs_renewal(
            &m,
            &dns_names("other", "sealgate-system"),
            now
        ));
        let r = renew(&m, names.clone(), now + time::Duration::days(250)).unwrap();
        assert_eq!(r.ca_cert, m.ca_cert, "the CA is kept");
        assert_ne!(r.cert, m.cert);
        assert!(!needs_renewal(&r, &names, now + time::Duration::days(250)));
        assert!(!format!("{m:?}").contains("PRIVATE KEY"));
    }

    /// `--tls-san`: IP addresses and DNS names join the Service's names, and a certificate that
    /// holds them is not reissued at every pass (IP SANs were not read back before).
    #[test]
    fn extra_names() {
        let cfg = SelfTlsConfig {
            namespace: "sealgate-system".into(),
            secret: "s".into(),
            webhook_config: "w".into(),
            service: "sealgate-webhook".into(),
            extra_names: vec![
                "127.0.0.1".into(),
                "::1".into(),
                "webhook.example.com".into(),
            ],
            cert_path: "c".into(),
            key_path: "k".into(),
        };
        let names = cfg.names();
        assert_eq!(names.len(), 7);
        let now = OffsetDateTime::now_utc();
        let m = generate(names.clone(), now).unwrap();
        assert!(!needs_renewal(&m, &names, now), "{:?}", inspect(&m.cert));
        let (_, _, have) = inspect(&m.cert).unwrap();
        assert!(have.contains(&"127.0.0.1".to_string()) && have.contains(&"::1".to_string()));
        let fewer = dns_names("sealgate-webhook", "sealgate-system");
        assert!(needs_renewal(&m, &fewer, now), "a name was dropped");
    }

    #[test]
    fn san_flag() {
        assert_eq!(parse_san("10.0.0.5").unwrap(), "10.0.0.5");
        assert_eq!(parse_san("fd00::1").unwrap(), "fd00::1");
        assert_eq!(
            parse_san("Webhook.Example.com").unwrap(),
            "webhook.example.com"
        );
        assert_eq!(parse_san("*.example.com").unwrap(), "*.example.com");
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a b",
            "http://x",
            "x".repeat(64).as_str(),
        ] {
            let e = parse_san(bad).unwrap_err();
            assert!(e.contains("neither an IP address nor a DNS name"), "{e}");
        }
    }
}
