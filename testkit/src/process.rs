//! Running this workspace's binaries in tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Child;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory holding this workspace's binaries, after building them once per process:
/// another package's binaries are not built for a package's tests, and a stale one would test
/// old code.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a cargo target directory")
        .to_path_buf();
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "sealgate-cli",
            "-p",
            "sealgate-controller",
        ])
        .args(["-p", "sealgate-webhook"]);
        // The binaries of the test's own profile (`cargo test --release` measures release).
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(repo()).status().expect("cargo runs");
        assert!(status.success(), "cannot build the workspace's binaries");
    });
    dir
}

/// A free loopback port (bound and released: good enough for tests on one machine), never one
/// this process was given before: the kernel may hand a just-released port out again, and two
/// calls in a row once gave a controller the same port for `--listen` and `--metrics-listen`.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// The output of a command that must have run and succeeded; if it did not, the panic names
/// `what` and shows its exit status, stdout and stderr.
#[track_caller]
pub fn succeeded(
    what: impl std::fmt::Display,
    out: std::io::Result<std::process::Output>,
) -> std::process::Output {
    let out = out.unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed when the guard goes out of scope (a failing test leaves nothing behind).
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Send SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Benchmarks run as production does: without library backtraces. With `RUST_BACKTRACE=1` (set on
/// these development machines) anyhow captures a backtrace for every error regorus raises
/// internally, which costs about a quarter of the evaluation time. Re-runs this process without.
pub fn without_library_backtraces() {
    let enabled = |k| std::env::var(k).is_ok_and(|v| v != "0");
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() && enabled("RUST_BACKTRACE") {
        let exe = std::env::current_exe().expect("current exe");
        let status = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("RUST_LIB_BACKTRACE", "0")
            .status()
            .expect("re-run the benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// Run `cmd` with its stdout piped, read one byte, then close the pipe (as `| head -c 1` does)
/// and wait: what a command does when its reader goes away.
pub fn with_stdout_closed_after_one_byte(mut cmd: std::process::Command) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_exact(&mut first)
        .expect("one byte of output");
    child.wait_with_output().expect("the command ends")
}

/// Run the binary `bin` with `args` where no cluster can be reached (no in-cluster variables, a
/// kubeconfig that does not exist) and return its stderr, asserting it refused them as a usage
/// error (exit 2) that says `want`, before reaching for the cluster.
pub fn refused_at_start(bin: &str, args: &[&str], want: &str) -> String {
    let out = std::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("the binary starts");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(
        !err.contains("kubeconfig") && !err.contains("Kubernetes API"),
        "{args:?} reached for the cluster before refusing: {err}"
    );
    err
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_never_given_twice() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
