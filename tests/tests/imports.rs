//! Each crate's module graph has no circles: within a crate, the top-level modules that name each
//! other through `crate::` paths (`crate::a::b`, `crate::{a, b}`) form a graph without cycles, so
//! every module can be read, tested and replaced from the bottom up. A cycle fails with its path.
//! (core states a stricter order in its `lib.rs`, checked by `core/tests/layers.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["core", "webhook", "cli", "controller", "testkit"];

/// The crate's top-level modules: `src/NAME.rs` and `src/NAME/` (entry points aside).
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs")).then_some(name)
        })
        .filter(|n| !["lib", "main"].contains(&n.as_str()))
        .collect()
}

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            sources(&e.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The first identifier of each item of a `crate::` path or brace group in `text`.
fn crate_paths(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for part in text.split("crate::").skip(1) {
        if let Some(group) = part.strip_prefix('{') {
            // Top-level items of the group: `{a, b::{c, d}, e}` gives a, b, e.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.push(ident(&item));
        } else {
            out.push(ident(part));
        }
    }
    out
}

/// Module → the sibling modules it uses, from the source outside comments.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for m in &mods {
        let mut files = Vec::new();
        sources(&src.join(m), &mut files);
        sources(&src.join(format!("{m}.rs")), &mut files);
        let mut uses = BTreeSet::new();
        for f in files {
            let text: String = std::fs::read_to_string(&f)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            uses.extend(
                crate_paths(&text)
                    .into_iter()
                    .filter(|u| u != m && mods.contains(u)),
            );
        }
        g.insert(m.clone(), uses);
    }
    g
}

/// A cycle in `g`, as the path that closes it.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in &g[m] {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_circle_of_modules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for c in CRATES {
        let g = graph(&root.join(c).join("src"));
        assert!(g.len() >= 2, "{c}: found modules {:?}", g.keys());
        if let Some(path) = cycle(&g) {
            problems.push(format!("{c}: {}", path.join(" → ")));
        }
    }
    assert!(
        problems.is_empty(),
        "module circles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_paths_groups_and_cycles() {
    assert_eq!(
        crate_paths("use crate::a::B;\nuse crate::{b, c::{D, E}, d};\nlet x = crate::e::f();"),
        ["a", "b", "c", "d", "e"]
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&acyclic), None);
}
