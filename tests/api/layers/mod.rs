//! The layers of `src/` hold: no import circle, and a lower layer never
//! names a higher one (issue #22, STYLE.md "Growing herald (v3)").
//!
//! This is a check over the source text, not the compiler's view
//! (`graph.rs` reads the source, this file holds the rule). It reads every
//! file under `src/` except the crate roots (`lib.rs`, `main.rs`),
//! with comments and string literals blanked out, and test code left out
//! (a `#[cfg(test)] mod …` block or file: a test may build its fixture from
//! a higher layer, e.g. the hub's tests publish through the memory log).
//!
//! An edge `a.rs → b.rs` is any path in code that names `b`: `use` lines,
//! grouped ones (`use crate::{a, b::c}`, `use super::{x, y}`), `pub use`,
//! fully qualified paths in expressions and types (`crate::auth::Access`),
//! paths through a module brought in by `use` (`use crate::log;` then
//! `log::redis::RedisLog`), and relative paths to a child module (`use
//! apply::Applier;` in `hub/mod.rs`). `crate::`, `super::` and `self::` are resolved to
//! the longest module path that is a file. A folder's `mod x;` lines are its
//! structure, not an edge.
//!
//! The rule (also written in `src/lib.rs`):
//!
//! 1. **Top-level modules are layers**, listed from the top in the
//!    `//! # Layout` section of `src/lib.rs` (one `- [`name`]` item per line;
//!    several on one item share a layer). A module names only modules on
//!    layers below its own: never one above, never one beside it. Every
//!    `pub mod` of `lib.rs` is on the list, once, and the list names nothing
//!    else, so the map is true in both directions.
//! 2. **No circle between files.** One kind of arrow does not count: a
//!    file naming one of its ancestor modules (`super::Hub` in
//!    `hub/apply.rs`, `crate::log::PublishItem` in `log/disk/writer.rs`): a
//!    child implements or uses its parent's types, as Rust's privacy lets
//!    it, while the parent declares and re-exports it. Siblings and cousins
//!    never name each other in a circle.
//! 3. **No circle between folders** inside a top-level module: a file of
//!    `log/disk/` naming one of `log/redis/` is an arrow between the two
//!    folders, whichever files it joins (an ancestor's `mod.rs` excepted, as
//!    in rule 2). Between top-level modules, rule 1 already holds.
//!
//! It fails with the edges that break the rule, file by file, so the fix
//! (move the shared type down into a small module both can use) is plain.

mod graph;

use std::collections::{BTreeMap, BTreeSet};

use graph::{graph, module_of, src_dir, Edges};

/// The layers of `src/lib.rs`'s `//! # Layout` list, from the top: each
/// `//! - ` item holds the top-level modules linked at its start
/// (`[`app`]`, `[`config`], [`domain`]`), before the first `:`.
fn layers() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("read src/lib.rs");
    let mut layers = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            inside = doc == "# Layout";
            continue;
        }
        let Some(item) = doc.strip_prefix("- ").filter(|_| inside) else {
            continue;
        };
        let head = item.split(':').next().unwrap_or("");
        let names: Vec<String> = head
            .split("[`")
            .skip(1)
            .filter_map(|part| part.split("`]").next())
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            layers.push(names);
        }
    }
    layers
}

/// The `pub mod` / `mod` lines of `src/lib.rs`.
fn lib_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("read src/lib.rs");
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|l| l.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// The strongly connected components of `edges` with more than one file
/// (Tarjan's algorithm; recursive, which a crate of a few dozen files
/// allows).
fn circles(edges: &Edges) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        for u in w.edges.get(v).into_iter().flatten() {
            let u = u.as_str();
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.low[v].min(w.low[u]);
                w.low.insert(v, low);
            } else if w.on_stack.contains(u) {
                let low = w.low[v].min(w.index[u]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut scc = Vec::new();
            loop {
                let u = w.stack.pop().expect("on the stack");
                w.on_stack.remove(u);
                scc.push(u.to_owned());
                if u == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                w.out.push(scc);
            }
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.out
}

fn top(file: &str) -> &str {
    file.split('/')
        .next()
        .expect("a path")
        .trim_end_matches(".rs")
}

/// What breaks the rule, one line each; empty when the layers hold.
fn violations() -> Vec<String> {
    let (edges, unresolved) = graph();
    let mut bad = Vec::new();
    for (file, paths) in &unresolved {
        bad.push(format!(
            "{file}: cannot resolve {} to a file of src/",
            paths.join(", ")
        ));
    }
    let layers = layers();
    let mut layer_of = BTreeMap::new();
    for (n, names) in layers.iter().enumerate() {
        for name in names {
            if layer_of.insert(name.clone(), n).is_some() {
                bad.push(format!("lib.rs Layout lists `{name}` twice"));
            }
        }
    }
    let declared = lib_modules();
    for name in &declared {
        if !layer_of.contains_key(name) {
            bad.push(format!(
                "lib.rs declares `{name}` but its Layout does not list it"
            ));
        }
    }
    for name in layer_of.keys() {
        if !declared.contains(name) {
            bad.push(format!(
                "lib.rs Layout lists `{name}`, which is not a module of lib.rs"
            ));
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            let (a, b) = (top(from), top(to));
            if a == b {
                continue;
            }
            match (layer_of.get(a), layer_of.get(b)) {
                (Some(la), Some(lb)) if la < lb => {}
                (Some(la), Some(lb)) if la == lb => {
                    bad.push(format!("{from} names {to}: `{a}` and `{b}` share a layer"))
                }
                (Some(_), Some(_)) => bad.push(format!(
                    "{from} names {to}: `{b}` is above `{a}` in lib.rs's Layout"
                )),
                _ => {}
            }
        }
    }
    // A file naming one of its ancestors (`super::Hub` in `hub/apply.rs`,
    // `crate::log::PublishItem` in `log/disk/writer.rs`) is a child using
    // its parent's types, as Rust's privacy lets it: not a circle. Every
    // other edge counts.
    let down: Edges = edges
        .iter()
        .map(|(from, tos)| {
            let kept = tos
                .iter()
                .filter(|to| !names_ancestor(from, to))
                .cloned()
                .collect();
            (from.clone(), kept)
        })
        .collect();
    for scc in circles(&down) {
        let inside: BTreeSet<&String> = scc.iter().collect();
        let arrows: Vec<String> = scc
            .iter()
            .flat_map(|f| {
                down[f]
                    .iter()
                    .filter(|t| inside.contains(t))
                    .map(move |t| format!("{f} -> {t}"))
            })
            .collect();
        bad.push(format!(
            "import circle through {}: {}",
            scc.join(", "),
            arrows.join("; ")
        ));
    }
    // The same between folders inside a top-level module: a file of
    // `log/disk/` naming one of `log/redis/` is an arrow between the two
    // folders, whichever files it joins, and folders form no circle either.
    // (Between top-level modules, rule 1 holds.)
    let folder_edge = |from: &String, to: &String| {
        let (here, there) = (folder_of(from), folder_of(to));
        let counts =
            !names_ancestor(from, to) && here != there && !here.is_empty() && !there.is_empty();
        (counts && here[0] == there[0]).then(|| {
            (
                format!("{}/", here.join("/")),
                format!("{}/", there.join("/")),
            )
        })
    };
    let mut folders = Edges::new();
    for (from, tos) in &down {
        for (here, there) in tos.iter().filter_map(|to| folder_edge(from, to)) {
            folders.entry(here).or_default().insert(there);
        }
    }
    for scc in circles(&folders) {
        let inside: BTreeSet<&String> = scc.iter().collect();
        let arrows: Vec<String> = down
            .iter()
            .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
            .filter(|(from, to)| {
                folder_edge(from, to)
                    .is_some_and(|(here, there)| inside.contains(&here) && inside.contains(&there))
            })
            .map(|(from, to)| format!("{from} -> {to}"))
            .collect();
        bad.push(format!(
            "import circle between folders {}: {}",
            scc.join(", "),
            arrows.join("; ")
        ));
    }
    bad
}

/// Whether `to` is the file of one of `from`'s ancestor modules
/// (`hub/mod.rs` for `hub/apply.rs` and `hub/presence/shared.rs`).
fn names_ancestor(from: &str, to: &str) -> bool {
    let (here, there) = (module_of(from), module_of(to));
    there.len() < here.len() && here.starts_with(&there)
}

/// The folder a file is in, as a module path: `["hub", "presence"]` for
/// `hub/presence/shared.rs` and `hub/presence/mod.rs`; empty for a file of
/// `src/` itself.
fn folder_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_owned).collect();
    parts.pop();
    parts
}

#[test]
fn no_import_circle_and_lower_layers_never_name_higher_ones() {
    let bad = violations();
    assert!(
        bad.is_empty(),
        "the layers of src/ (lib.rs's Layout, tests/api/layers/) do not hold:\n  {}",
        bad.join("\n  ")
    );
}
