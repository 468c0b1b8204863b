//! The layers of `src/` hold: no import circle, and a lower layer never
//! names a higher one (issue #22, STYLE.md "Growing herald (v3)").
//!
//! This is a check over the source text, not the compiler's view; it reads
//! every file under `src/` except the crate roots (`lib.rs`, `main.rs`),
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its module path and its code with comments, strings and
/// test modules blanked.
struct Source {
    /// Relative to `src/`, with `/`: `hub/presence/mod.rs`.
    file: String,
    /// `["hub", "presence"]` for `hub/presence/mod.rs`.
    module: Vec<String>,
    code: Vec<u8>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_owned).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `text` with comments and the contents of string and char literals
/// replaced by spaces (newlines kept), so braces and paths in them do not
/// count.
fn blank(text: &str) -> Vec<u8> {
    let s = text.as_bytes();
    let mut out = s.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to.min(s.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    while i < s.len() {
        let prev_ident = i > 0 && is_ident(s[i - 1]);
        match s[i] {
            b'/' if s.get(i + 1) == Some(&b'/') => {
                let end = s[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(s.len(), |p| i + p);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < s.len() && depth > 0 {
                    if s[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if s[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                wipe(&mut out, i, j);
                i = j;
            }
            // r"…", r#"…"#, br#"…"#
            b'r' if !prev_ident
                || (i > 0 && s[i - 1] == b'b' && !(i > 1 && is_ident(s[i - 2]))) =>
            {
                let mut j = i + 1;
                while s.get(j) == Some(&b'#') {
                    j += 1;
                }
                if s.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let hashes = j - i - 1;
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                let end = s[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(s.len(), |p| j + 1 + p + close.len());
                wipe(&mut out, j, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < s.len() && s[j] != b'"' {
                    j += if s[j] == b'\\' { 2 } else { 1 };
                }
                wipe(&mut out, i, j + 1);
                i = j + 1;
            }
            // A char literal ('x', '\n', '\u{7f}'), not a lifetime ('a).
            b'\'' => {
                if s.get(i + 1) == Some(&b'\\') {
                    let mut j = i + 2;
                    while j < s.len() && s[j] != b'\'' {
                        j += 1;
                    }
                    wipe(&mut out, i, j + 1);
                    i = j + 1;
                } else if let Some(len) = text[i + 1..].chars().next().map(char::len_utf8) {
                    if s.get(i + 1 + len) == Some(&b'\'') {
                        wipe(&mut out, i, i + 2 + len);
                        i += 2 + len;
                    } else {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The index just past the `}` that closes the `{` at `open`.
fn matching(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

fn skip_ws(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(code: &[u8], i: usize) -> Option<(String, usize)> {
    let start = i;
    let mut j = i;
    if j < code.len() && (code[j].is_ascii_alphabetic() || code[j] == b'_') {
        while j < code.len() && is_ident(code[j]) {
            j += 1;
        }
        let word = String::from_utf8(code[start..j].to_vec()).expect("ascii");
        return Some((word, j));
    }
    None
}

/// Blanks every `#[cfg(test)] mod name { … }` in `code`, and returns the
/// names of the `#[cfg(test)] mod name;` files.
fn strip_tests(code: &mut [u8]) -> Vec<String> {
    let mut test_files = Vec::new();
    let marker = b"#[cfg(test)]";
    let mut from = 0;
    while let Some(p) = code[from..].windows(marker.len()).position(|w| w == marker) {
        let at = from + p;
        let mut i = skip_ws(code, at + marker.len());
        // Further attributes (#[allow(...)]) before the item.
        while code.get(i) == Some(&b'#') {
            let close = code[i..]
                .iter()
                .position(|&b| b == b']')
                .map_or(code.len(), |q| i + q + 1);
            i = skip_ws(code, close);
        }
        if code[i..].starts_with(b"pub ") {
            i = skip_ws(code, i + 4);
        }
        if code[i..].starts_with(b"mod ") {
            let (name, j) = ident_at(code, skip_ws(code, i + 4)).expect("mod name");
            let j = skip_ws(code, j);
            if code.get(j) == Some(&b';') {
                test_files.push(name);
                from = j;
                continue;
            }
            if code.get(j) == Some(&b'{') {
                let end = matching(code, j);
                for b in &mut code[at..end] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                from = end;
                continue;
            }
        }
        from = at + marker.len();
    }
    test_files
}

/// The inline (non-test) `mod name { … }` blocks: (start, end, name), so a
/// `super::` inside one is resolved from there.
fn inline_mods(code: &[u8]) -> Vec<(usize, usize, String)> {
    let mut mods = Vec::new();
    let mut i = 0;
    while i + 4 < code.len() {
        if code[i..].starts_with(b"mod ") && (i == 0 || !is_ident(code[i - 1])) {
            if let Some((name, j)) = ident_at(code, skip_ws(code, i + 4)) {
                let j = skip_ws(code, j);
                if code.get(j) == Some(&b'{') {
                    mods.push((j, matching(code, j), name));
                }
            }
        }
        i += 1;
    }
    mods
}

/// Reads a path at `i` (`a::b::{c, d::e as f, self}`) into its expanded
/// leaves, each with the name it binds (for `use`).
fn read_path(
    code: &[u8],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let mut path = prefix;
    loop {
        i = skip_ws(code, i);
        if code.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip_ws(code, i);
                match code.get(i) {
                    Some(b'}') => return i + 1,
                    Some(b',') => i += 1,
                    None => return i,
                    _ => i = read_path(code, i, path.clone(), out),
                }
            }
        }
        if code.get(i) == Some(&b'*') {
            out.push((path, String::new()));
            return i + 1;
        }
        let Some((word, j)) = ident_at(code, i) else {
            out.push((path, String::new()));
            return i;
        };
        i = j;
        let next = skip_ws(code, i);
        if code[next..].starts_with(b"::") && !code[next + 2..].starts_with(b"<") {
            path.push(word);
            i = next + 2;
            continue;
        }
        let mut bound = word.clone();
        if code[next..].starts_with(b"as ") {
            if let Some((alias, k)) = ident_at(code, skip_ws(code, next + 3)) {
                bound = alias;
                i = k;
            }
        }
        if word == "self" {
            bound = if bound == "self" {
                path.last().cloned().unwrap_or_default()
            } else {
                bound
            };
        } else {
            path.push(word);
        }
        out.push((path, bound));
        return i;
    }
}

/// The module path `path` (absolute) resolves to: its longest prefix that
/// is a file of the crate.
fn resolve(modules: &BTreeMap<Vec<String>, String>, path: &[String]) -> Option<(String, bool)> {
    (1..=path.len()).rev().find_map(|n| {
        modules
            .get(&path[..n])
            .map(|file| (file.clone(), n == path.len()))
    })
}

/// `super::`/`self::`/`crate::` path starting at `first` made absolute,
/// from module `here`.
fn absolute(here: &[String], path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

/// Each file (relative to `src/`) → the files it names.
type Edges = BTreeMap<String, BTreeSet<String>>;

/// The edges, and the paths of each file that name no file of the crate
/// (`crate::State`, through a `lib.rs` re-export: write the module path).
fn graph() -> (Edges, BTreeMap<String, Vec<String>>) {
    let src = src_dir();
    let mut paths = Vec::new();
    collect(&src, &mut paths);
    let mut sources = Vec::new();
    let mut test_only = BTreeSet::new();
    for path in &paths {
        let file = path
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if file == "lib.rs" || file == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a source file");
        let mut code = blank(&text);
        let module = module_of(&file);
        for name in strip_tests(&mut code) {
            let dir = if file.ends_with("mod.rs") {
                file.trim_end_matches("mod.rs").to_owned()
            } else {
                format!("{}/", file.trim_end_matches(".rs"))
            };
            test_only.insert(format!("{dir}{name}.rs"));
            test_only.insert(format!("{dir}{name}/mod.rs"));
        }
        sources.push(Source { file, module, code });
    }
    sources.retain(|s| !test_only.contains(&s.file));
    let modules: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|s| (s.module.clone(), s.file.clone()))
        .collect();
    let mut edges = Edges::new();
    let mut unresolved: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &sources {
        let code = &s.code;
        let inline = inline_mods(code);
        let here_at = |pos: usize| {
            let mut m = s.module.clone();
            m.extend(
                inline
                    .iter()
                    .filter(|(a, b, _)| *a < pos && pos < *b)
                    .map(|(_, _, n)| n.clone()),
            );
            m
        };
        // Pass 1: paths from crate/super/self; module aliases bound by `use`.
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut found: Vec<Vec<String>> = Vec::new();
        let mut i = 0;
        while i < code.len() {
            let starts =
                i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == b':' || code[i - 1] == b'$');
            let root = [&b"crate::"[..], b"super::", b"self::"]
                .into_iter()
                .find(|r| code[i..].starts_with(r));
            if let (true, Some(_)) = (starts, root) {
                let in_use = {
                    let line_start = code[..i]
                        .iter()
                        .rposition(|&b| b == b'\n' || b == b';' || b == b'{')
                        .map_or(0, |p| p + 1);
                    let head = String::from_utf8_lossy(&code[line_start..i]);
                    let head = head.trim();
                    head == "use"
                        || head.ends_with(" use")
                        || head.starts_with("pub") && head.ends_with("use")
                };
                let mut leaves = Vec::new();
                let end = read_path(code, i, Vec::new(), &mut leaves);
                let here = here_at(i);
                for (path, bound) in leaves {
                    let abs = absolute(&here, &path);
                    match resolve(&modules, &abs) {
                        Some((_, whole)) => {
                            if in_use && whole && !bound.is_empty() {
                                aliases.insert(bound, abs.clone());
                            }
                            found.push(abs);
                        }
                        None if abs.is_empty() => {}
                        None => unresolved
                            .entry(s.file.clone())
                            .or_default()
                            .push(path.join("::")),
                    }
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        // A child module is named by a relative path (`use apply::Applier;`
        // in `hub/mod.rs`), as an alias would be.
        for module in modules.keys() {
            if module.len() == s.module.len() + 1 && module.starts_with(&s.module) {
                let name = module.last().expect("a child has a name").clone();
                aliases.entry(name).or_insert_with(|| module.clone());
            }
        }
        // Pass 2: paths through an alias (`log::redis::RedisLog`) or a child.
        let mut i = 0;
        while i < code.len() {
            let starts =
                i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == b':' || code[i - 1] == b'$');
            if starts {
                if let Some((word, j)) = ident_at(code, i) {
                    if let Some(target) = aliases.get(&word) {
                        if code[j..].starts_with(b"::") {
                            let mut leaves = Vec::new();
                            let end = read_path(code, j + 2, target.clone(), &mut leaves);
                            found.extend(leaves.into_iter().map(|(p, _)| p));
                            i = end.max(j);
                            continue;
                        }
                    }
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        let entry = edges.entry(s.file.clone()).or_default();
        for abs in found {
            if let Some((file, _)) = resolve(&modules, &abs) {
                if file != s.file {
                    entry.insert(file);
                }
            }
        }
    }
    (edges, unresolved)
}

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
        "the layers of src/ (lib.rs's Layout, tests/api/layers.rs) do not hold:\n  {}",
        bad.join("\n  ")
    );
}
