//! Reading `src/` into a graph of files: comments, strings and test
//! modules blanked, every path that names a module of the crate resolved to
//! its file (see `mod.rs` for which paths count, and the rule).

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

pub(super) fn src_dir() -> PathBuf {
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

pub(super) fn module_of(file: &str) -> Vec<String> {
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
pub(super) type Edges = BTreeMap<String, BTreeSet<String>>;

/// The edges, and the paths of each file that name no file of the crate
/// (`crate::State`, through a `lib.rs` re-export: write the module path).
pub(super) fn graph() -> (Edges, BTreeMap<String, Vec<String>>) {
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
