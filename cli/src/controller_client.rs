//! The controller's HTTP API from the CLI: directly (`http(s)://HOST:PORT`, e.g. through
//! `kubectl port-forward`), or through the API server's service proxy with the kubeconfig's
//! credentials (`kube://[NAMESPACE/SERVICE]`), as kubeseal reaches its controller.

use anyhow::{Context, Result, anyhow, bail};

use crate::args::ControllerArgs;

pub const DEFAULT_NAMESPACE: &str = "sealgate-system";
pub const DEFAULT_SERVICE: &str = "sealgate-controller";
/// The controller Service's port name (deploy/ names it so the proxy path can use it).
pub const PORT_NAME: &str = "http";
/// Largest response read (a rotated SealedSecret is at most about 2 MiB).
const MAX_RESPONSE: u64 = 4 << 20;

pub enum Controller {
    Direct {
        base: String,
        agent: ureq::Agent,
    },
    Proxy {
        namespace: String,
        service: String,
        rt: tokio::runtime::Runtime,
        client: kube::Client,
    },
}

/// A response: status code and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body for a message: the controller's own errors are one line of text; anything else
    /// (an ingress's or proxy's HTML page) is summed up, never dumped.
    pub fn text(&self) -> String {
        summarize(&String::from_utf8_lossy(&self.body))
    }
}

/// At most a line or two of `body`: an HTML page by its title, long text cut.
fn summarize(body: &str) -> String {
    const MAX: usize = 300;
    let body = body.trim();
    let lower = body.to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") || lower.starts_with('<') {
        let title = lower
            .find("<title>")
            .and_then(|s| Some((s + 7, lower[s..].find("</title>")? + s)))
            .map(|(a, b)| body[a..b].trim().to_string())
            .filter(|t| !t.is_empty());
        return match title {
            Some(t) => format!(
                "an HTML page titled {t:?} ({} bytes), not the controller's answer: is something else (an ingress, a proxy) answering at that address?",
                body.len()
            ),
            None => format!(
                "an HTML page ({} bytes), not the controller's answer: is something else (an ingress, a proxy) answering at that address?",
                body.len()
            ),
        };
    }
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &one_line[..cut], body.len()),
        None => one_line,
    }
}

/// The controller `--controller` names, if it names one.
pub fn connect(args: &ControllerArgs) -> Result<Option<Controller>> {
    args.controller
        .as_deref()
        .map(|url| {
            Controller::connect(
                url,
                args.kube_context.as_deref(),
                args.kubeconfig.as_deref(),
            )
        })
        .transpose()
}

impl Controller {
    /// `http(s)://…` or `kube://[NAMESPACE/SERVICE]`; `context` picks the kubeconfig context and
    /// `kubeconfig` the file [default: KUBECONFIG, else ~/.kube/config].
    pub fn connect(
        url: &str,
        context: Option<&str>,
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<Controller> {
        if url.starts_with("http://") || url.starts_with("https://") {
            crate::fetch::warn_plain_http(url, "talking to the controller");
            use ureq::tls::{RootCerts, TlsConfig};
            let agent = ureq::Agent::config_builder()
                .tls_config(
                    TlsConfig::builder()
                        .root_certs(RootCerts::PlatformVerifier)
                        .build(),
                )
                .timeout_global(Some(std::time::Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into();
            return Ok(Controller::Direct {
                base: url.trim_end_matches('/').to_string(),
                agent,
            });
        }
        let Some(rest) = url.strip_prefix("kube://") else {
            bail!(
                "--controller {url:?}: expected http(s)://HOST:PORT or kube://[NAMESPACE/SERVICE]"
            );
        };
        let (namespace, service) = match rest.trim_end_matches('/') {
            "" => (DEFAULT_NAMESPACE, DEFAULT_SERVICE),
            r => r.split_once('/').filter(|(n, s)| !n.is_empty() && !s.is_empty()).ok_or_else(|| {
                anyhow!("--controller {url:?}: expected kube://NAMESPACE/SERVICE, e.g. kube://{DEFAULT_NAMESPACE}/{DEFAULT_SERVICE}")
            })?,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_string),
            ..Default::default()
        };
        let source = kubeconfig.map_or_else(
            || "the kubeconfig (KUBECONFIG or ~/.kube/config)".to_string(),
            |p| format!("the kubeconfig {}", p.display()),
        );
        let client = rt
            .block_on(async {
                let config = match kubeconfig {
                    Some(p) => {
                        let kc = kube::config::Kubeconfig::read_from(p)?;
                        kube::Config::from_custom_kubeconfig(kc, &options).await?
                    }
                    None => kube::Config::from_kubeconfig(&options).await?,
                };
                anyhow::Ok(kube::Client::try_from(config)?)
            })
            .map_err(|e| client_cert_hint(e, &source, kubeconfig, context))
            .with_context(|| format!("cannot load {source} to reach the controller"))?;
        Ok(Controller::Proxy {
            namespace: namespace.into(),
            service: service.into(),
            rt,
            client,
        })
    }

    /// Where requests go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Controller::Direct { base, .. } => base.clone(),
            Controller::Proxy {
                namespace, service, ..
            } => format!("service {namespace}/{service} (through the API server)"),
        }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Reply> {
        let reply = match self {
            Controller::Direct { base, agent } => {
                let url = format!("{base}{path}");
                let resp = match body {
                    Some(b) => agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(b),
                    None => agent.get(&url).call(),
                };
                let mut resp =
                    resp.with_context(|| format!("cannot reach the controller at {url}"))?;
                let status = resp.status().as_u16();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_RESPONSE)
                    .read_to_vec()
                    .with_context(|| format!("cannot read the controller's answer from {url}"))?;
                Reply { status, body }
            }
            Controller::Proxy {
                namespace,
                service,
                rt,
                client,
            } => {
                let uri = format!(
                    "/api/v1/namespaces/{namespace}/services/http:{service}:{PORT_NAME}/proxy{path}"
                );
                let req = http::Request::builder()
                    .method(method)
                    .uri(&uri)
                    .header("Content-Type", "application/json")
                    .body(body.map(<[u8]>::to_vec).unwrap_or_default())
                    .map_err(|e| anyhow!("{e}"))?;
                rt.block_on(async {
                    use http_body_util::BodyExt;
                    let resp = client.send(req.map(kube::client::Body::from)).await?;
                    let status = resp.status().as_u16();
                    let body =
                        http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE as usize)
                            .collect()
                            .await
                            .map_err(|e| anyhow!("{e}"))?
                            .to_bytes()
                            .to_vec();
                    anyhow::Ok(Reply { status, body })
                })
                .with_context(|| {
                    format!("cannot reach the controller through the API server at {uri}")
                })?
            }
        };
        Ok(reply)
    }

    /// POST a SealedSecret (verify, rotate), waiting out the controller's per-client rate limit
    /// (429 with Retry-After) a few times.
    pub fn post_sealed(&self, path: &str, doc: &serde_json::Value) -> Result<Reply> {
        let body = serde_json::to_vec(doc)?;
        let mut waited = 0;
        loop {
            let r = self.request("POST", path, Some(&body))?;
            if r.status != 429 || waited >= 30 {
                return Ok(r);
            }
            // The limiter refills 5 tokens a second: a second is always enough for one.
            std::thread::sleep(std::time::Duration::from_secs(1));
            waited += 1;
        }
    }

    /// GET that must answer 200.
    pub fn get(&self, path: &str) -> Result<Vec<u8>> {
        let r = self.request("GET", path, None)?;
        if r.status != 200 {
            bail!(
                "the controller at {} answered {} to GET {path}: {}",
                self.describe(),
                r.status,
                r.text()
            );
        }
        Ok(r.body)
    }
}

/// rustls accepts only X.509 v3 certificates; kubectl (Go) also takes v1 ones, which
/// `openssl x509 -req` writes when given no extensions. Say so instead of rustls's enum name,
/// naming the certificate.
fn client_cert_hint(
    e: anyhow::Error,
    source: &str,
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Error {
    if !format!("{e:#}").contains("UnsupportedCertVersion") {
        return e;
    }
    let which = client_cert(kubeconfig, context)
        .unwrap_or_else(|| format!("the client certificate in {source}"));
    anyhow!(
        "{which} is X.509 version 1, which sealgate's TLS library (rustls) does not accept, though kubectl does. \
Re-issue it as version 3: `openssl x509 -req … -extfile <(printf 'extendedKeyUsage=clientAuth')` (any extension makes it v3); \
or let the user authenticate with a token or an exec credential plugin instead"
    )
}

/// "user NAME's client certificate FILE" for the context in use, if the kubeconfig says.
fn client_cert(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> Option<String> {
    let kc = match kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok()?,
        None => kube::config::Kubeconfig::read().ok()?,
    };
    let ctx = context.map(str::to_string).or(kc.current_context.clone())?;
    let user = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx)?
        .context
        .as_ref()?
        .user
        .clone()?;
    let auth = kc
        .auth_infos
        .iter()
        .find(|a| a.name == user)?
        .auth_info
        .as_ref()?;
    Some(match &auth.client_certificate {
        Some(file) => format!("user {user:?}'s client certificate {file}"),
        None => format!("user {user:?}'s client-certificate-data (context {ctx:?})"),
    })
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn answers_are_summed_up_not_dumped() {
        let page = format!(
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
            "x".repeat(5000)
        );
        let s = summarize(&page);
        assert!(s.contains("\"502 Bad Gateway\"") && s.len() < 250, "{s}");
        assert_eq!(summarize("  unknown key\n"), "unknown key");
        let long = "word ".repeat(200);
        let s = summarize(&long);
        assert!(s.ends_with("(999 bytes)") && s.chars().count() < 320, "{s}");
    }
}
