//! Files as the tests check them.

use std::path::Path;

/// The permission bits of `path` (`0o600` for a file only its owner reads and writes).
#[track_caller]
pub fn mode(path: impl AsRef<Path>) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
