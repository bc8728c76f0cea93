//! The layering `src/lib.rs` states is true: each top-level module uses (in code, not in doc
//! comments) only the modules listed above it there, so the crate's module graph has no circles.

use std::path::Path;

/// The modules in `lib.rs`'s list, bottom layer first.
fn layers(lib: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in lib.lines().take_while(|l| l.starts_with("//!")) {
        for part in line.split("[`").skip(1) {
            if let Some(name) = part.split('`').next() {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The sibling modules a module's source uses: `crate::NAME` outside comments.
fn uses(path: &Path, modules: &[String], out: &mut Vec<String>) {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    for f in files {
        if f.is_dir() {
            uses(&f, modules, out);
            continue;
        }
        if f.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for part in line.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layers(&lib);
    assert!(order.len() >= 10, "lib.rs lists {order:?}");
    let mut problems = Vec::new();
    for (i, module) in order.iter().enumerate() {
        let path = if src.join(module).is_dir() {
            src.join(module)
        } else {
            src.join(format!("{module}.rs"))
        };
        assert!(path.exists(), "{module} is listed but has no source");
        let mut used = Vec::new();
        uses(&path, &order, &mut used);
        for u in used.iter().filter(|u| *u != module) {
            if order.iter().position(|m| m == u).unwrap() > i {
                problems.push(format!("{module} uses {u}, which is listed after it"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every public module is in the list.
    for line in lib.lines().filter(|l| l.starts_with("pub mod ")) {
        let name = line.trim_start_matches("pub mod ").trim_end_matches(';');
        assert!(
            order.iter().any(|m| m == name),
            "{name} is not in lib.rs's list"
        );
    }
}
