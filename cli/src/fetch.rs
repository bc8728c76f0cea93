//! Fetching certificates over HTTP(S), and the warning for plain HTTP to another host.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sealgate_core::keys::PublicKey;

use crate::input::read_file;

/// Certificates from a file path or a URL (`http(s)://`, `file://`).
pub fn fetch_certs(src: &str) -> Result<Vec<PublicKey>> {
    let (name, bytes) = if src.starts_with("http://") || src.starts_with("https://") {
        warn_plain_http(src, "fetching the certificate");
        (src.to_string(), http_get(src)?)
    } else {
        let path = PathBuf::from(src.strip_prefix("file://").unwrap_or(src));
        let input = read_file(&path).context("cannot read the certificate")?;
        (input.name, input.bytes.to_vec())
    };
    PublicKey::from_pem_bundle(&bytes).with_context(|| format!("{name}: not a usable certificate"))
}

fn http_get(url: &str) -> Result<Vec<u8>> {
    use ureq::tls::{RootCerts, TlsConfig};
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .header("Accept", "application/x-pem-file, */*")
        .call()
        .with_context(|| format!("cannot fetch the certificate from {url}"))?;
    resp.body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .with_context(|| format!("cannot read the certificate from {url}"))
}

/// A warning for a plain-HTTP URL to another host: whoever is on the path can swap the
/// certificate for their own and read every value sealed to it. Loopback (`kubectl
/// port-forward`) is exempt.
pub fn warn_plain_http(url: &str, what: &str) {
    if let Some(host) = plain_http_remote_host(url) {
        eprintln!(
            "warning: {what} over plain HTTP from {host}: anyone on the path can replace the key with their own; use https://, kube://, a file, or pin the key with --expect-key-id"
        );
    }
}

/// The host of an `http://` URL unless it is loopback.
fn plain_http_remote_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::plain_http_remote_host as remote;

    #[test]
    fn plain_http_to_another_host_is_flagged_loopback_and_https_are_not() {
        assert_eq!(
            remote("http://sealgate.example.com/v1/cert.pem"),
            Some("sealgate.example.com")
        );
        assert_eq!(remote("http://10.0.0.7:8080"), Some("10.0.0.7"));
        assert_eq!(
            remote("http://user@evil.example:80/x"),
            Some("evil.example")
        );
        assert_eq!(remote("http://[2001:db8::1]:8080/"), Some("2001:db8::1"));
        for quiet in [
            "http://localhost:8080/v1/cert.pem",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "https://sealgate.example.com/v1/cert.pem",
            "kube://",
            "cert.pem",
        ] {
            assert_eq!(remote(quiet), None, "{quiet}");
        }
    }
}
