//! Embeds the built-in policy bundle (`../policies`): every `template.yaml` and `constraint.yaml`
//! found there, so adding a policy directory is enough to ship it.

use std::path::{Path, PathBuf};

fn main() {
    // The run-time variable, not `env!`: a build-script binary reused from a checkout elsewhere
    // (same target directory) would otherwise look in that checkout and embed nothing.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../policies");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    // An empty built-in bundle would pass every check silently.
    assert!(
        !files.is_empty(),
        "no template.yaml or constraint.yaml under {}",
        root.display()
    );
    let mut out = String::from(
        "/// `(path under policies/, contents)` of every built-in template and constraint.\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f
            .strip_prefix(&root)
            .expect("under root")
            .display()
            .to_string();
        out.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            f.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin_policies.rs");
    std::fs::write(dest, out).expect("write builtin_policies.rs");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if p.is_dir() {
            if name != "samples" && !name.starts_with('.') {
                println!("cargo:rerun-if-changed={}", p.display());
                collect(&p, out);
            }
        } else if name == "template.yaml" || name == "constraint.yaml" {
            out.push(p);
        }
    }
}
