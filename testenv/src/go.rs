//! The Go binaries the tier runs, built from the small modules under `testenv/go/` (their
//! `go.sum` pins every dependency) into a cache outside the clone, once per machine and pin.
//!
//! The cache key is the module's `go.mod` and `go.sum`, the packages, the linker flags and the
//! Go version: a changed pin builds again, an unchanged one never does. Concurrent test binaries
//! wait on a lock file; a build goes to a temporary directory first, so an interrupted build
//! never leaves a half-filled cache entry.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Kubernetes release the tier runs.
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// One Go module under `testenv/go/` and the binaries built from it.
#[derive(Debug, Clone, Copy)]
pub struct GoModule {
    /// The directory under `testenv/go/`.
    pub dir: &'static str,
    /// Package paths to build (each gives the binary named after its last element).
    pub packages: &'static [&'static str],
    /// `-ldflags`.
    pub ldflags: &'static str,
    /// What a cold build costs here, for the message printed before it.
    pub cold_build: &'static str,
}

/// kube-apiserver, kube-controller-manager and kubectl. The version variables make discovery and
/// `kubectl version` report the release instead of `v0.0.0-master`.
pub const KUBERNETES: GoModule = GoModule {
    dir: "kubernetes",
    packages: &[
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kubectl",
    ],
    ldflags: "-s -w \
        -X k8s.io/component-base/version.gitVersion=v1.37.2 \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=37 \
        -X k8s.io/client-go/pkg/version.gitVersion=v1.37.2 \
        -X k8s.io/client-go/pkg/version.gitMajor=1 \
        -X k8s.io/client-go/pkg/version.gitMinor=37",
    cold_build: "about 12 minutes on 2 cores",
};

/// etcd (3.6).
pub const ETCD: GoModule = GoModule {
    dir: "etcd",
    packages: &["sealgate.dev/testenv/etcd"],
    ldflags: "-s -w",
    cold_build: "about 1 minute",
};

/// Bitnami Sealed Secrets' controller and kubeseal (v0.27.1).
pub const BITNAMI: GoModule = GoModule {
    dir: "bitnami",
    packages: &[
        "github.com/bitnami-labs/sealed-secrets/cmd/controller",
        "github.com/bitnami-labs/sealed-secrets/cmd/kubeseal",
    ],
    ldflags: "-s -w",
    cold_build: "about 4 minutes",
};

/// Prometheus' promtool (v0.316.0, Prometheus 3.x): `check rules` and `test rules` on the
/// alerts in `deploy/components/monitoring`.
pub const PROMTOOL: GoModule = GoModule {
    dir: "promtool",
    packages: &["github.com/prometheus/prometheus/cmd/promtool"],
    ldflags: "-s -w",
    cold_build: "about 5 minutes",
};

/// Helm 4 (v4.3.2): lints, renders and installs `charts/sealgate`.
pub const HELM: GoModule = GoModule {
    dir: "helm",
    packages: &["helm.sh/helm/v4/cmd/helm"],
    ldflags: "-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.2",
    cold_build: "about 4 minutes",
};

/// Gatekeeper's gator (v3.23.1): the peer `sealgate policy verify` is compared with.
pub const GATOR: GoModule = GoModule {
    dir: "gator",
    packages: &["github.com/open-policy-agent/gatekeeper/v3/cmd/gator"],
    ldflags: "-s -w -X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version=v3.23.1",
    cold_build: "about 4 minutes",
};

/// conftest (v0.71.1, OPA 1.21.1): the peer `sealgate lint` is measured beside (`bench/peers.sh`).
pub const CONFTEST: GoModule = GoModule {
    dir: "conftest",
    packages: &["github.com/open-policy-agent/conftest"],
    ldflags: "-s -w -X github.com/open-policy-agent/conftest/internal/version.Version=v0.71.1",
    cold_build: "about 2 minutes",
};

/// Why the binaries cannot be had: the tier skips (or, with `SEALGATE_REQUIRE_CLUSTER`, fails)
/// with this message.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A peer's binary `name` from `m`, or `None` after reporting it missing with
/// [`sealgate_testkit::peer::missing`] (a failure under `SEALGATE_REQUIRE_PEERS`, as `.ci/run`
/// sets it).
pub fn peer_binary(m: &GoModule, name: &str) -> Option<PathBuf> {
    match binaries(m) {
        Ok(dir) => Some(dir.join(name)),
        Err(e) => {
            sealgate_testkit::peer::missing(&format!(
                "{name} (Go 1.26 and the Go module proxy build it from testenv/go/{}): {e}",
                m.dir
            ));
            None
        }
    }
}

/// `helm` (from [`HELM`]'s binaries) with its cache, config and data under `home`, never the
/// user's.
pub fn helm_command(helm: &Path, home: &Path) -> Command {
    let mut c = Command::new(helm);
    c.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    c
}

/// A module's sources: `testenv/go/<dir>`.
pub fn module_dir(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go").join(dir)
}

/// The cache root: `$SEALGATE_TESTENV_CACHE`, or `~/.cache/sealgate/testenv`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SEALGATE_TESTENV_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/sealgate/testenv")
}

pub(crate) fn go_version() -> Result<String, Unavailable> {
    let out = Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|_| {
            Unavailable(
                "the real-cluster tier needs Go 1.26 or newer to build kube-apiserver, \
                 kube-controller-manager and etcd from their modules: install it from \
                 https://go.dev/doc/install (Debian 12's golang package is too old) and put \
                 `go` on PATH"
                    .into(),
            )
        })?;
    if !out.status.success() {
        return Err(Unavailable(format!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The directory holding `m`'s binaries, building them first if this pin has not been built on
/// this machine.
pub fn binaries(m: &GoModule) -> Result<PathBuf, Unavailable> {
    let go = go_version()?;
    let src = module_dir(m.dir);
    let read = |f: &str| {
        std::fs::read(src.join(f))
            .map_err(|e| Unavailable(format!("cannot read {}: {e}", src.join(f).display())))
    };
    let mut key = read("go.mod")?;
    key.extend(read("go.sum")?);
    key.extend(format!("{:?}{}{go}", m.packages, m.ldflags).as_bytes());
    let hash = sealgate_core::manifest::sha256_hex(&key);
    let root = cache_root();
    let out = root.join(format!("{}-{}", m.dir, &hash[..16]));
    if out.join(".complete").exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&root)
        .map_err(|e| Unavailable(format!("cannot create {}: {e}", root.display())))?;
    let lock = File::create(root.join(format!("{}.lock", m.dir)))
        .map_err(|e| Unavailable(format!("cannot create the build lock: {e}")))?;
    lock.lock()
        .map_err(|e| Unavailable(format!("cannot take the build lock: {e}")))?;
    // Another test binary may have built it while this one waited.
    if out.join(".complete").exists() {
        return Ok(out);
    }
    let tmp = root.join(format!("{}-{}.partial", m.dir, &hash[..16]));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "testenv: building {} from testenv/go/{} with {go} into {} ({} when Go's caches are cold)",
        m.packages.join(", "),
        m.dir,
        out.display(),
        m.cold_build
    );
    let started = Instant::now();
    let mut dest = tmp.clone().into_os_string();
    dest.push("/");
    let status = Command::new("go")
        .args(["build", "-trimpath", "-ldflags", m.ldflags, "-o"])
        .arg(&dest)
        .args(m.packages)
        .current_dir(&src)
        // go.sum is the pin: never rewrite it, never fetch another toolchain.
        .env("GOFLAGS", "-mod=readonly")
        .env("GOTOOLCHAIN", "local")
        .status()
        .map_err(|e| Unavailable(format!("cannot run go build: {e}")))?;
    if !status.success() {
        return Err(Unavailable(format!(
            "go build in testenv/go/{} failed ({status}); its output is above",
            m.dir
        )));
    }
    File::create(tmp.join(".complete"))
        .and_then(|_| {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::rename(&tmp, &out)
        })
        .map_err(|e| Unavailable(format!("cannot fill {}: {e}", out.display())))?;
    eprintln!(
        "testenv: built testenv/go/{} in {:.0} s",
        m.dir,
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}
