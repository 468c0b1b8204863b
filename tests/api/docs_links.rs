//! Every relative link in README.md and docs/*.md resolves (issue 22): its
//! file exists, relative to the page that links to it and inside the
//! repository, and its `#fragment`, on the same page or another Markdown
//! page, is the GitHub slug of one of that page's headings. Absolute
//! `http(s)://` links are not followed; a link that leaves the repository
//! (`../shared/SPEC.md`) or starts at `/` is broken, since a clone has only
//! what the repository holds.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::durable::TempDir;

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = pages(root);
    assert!(
        pages.iter().any(|p| p == Path::new("README.md")) && pages.len() > 1,
        "the README and docs/*.md are checked: {pages:?}"
    );
    let broken = broken_links(root, &pages);
    assert!(
        broken.is_empty(),
        "broken links (a path relative to the page, a fragment that is a heading's slug):\n{}",
        broken.join("\n")
    );
}

/// The check itself must catch each kind of broken link and pass the good
/// ones, or the test above could never fail.
#[test]
fn the_link_check_reports_each_kind_of_broken_link() {
    let dir = TempDir::new("docs-links");
    let root = dir.path.join("repo");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(root.join("docs/pic.png"), b"png").unwrap();
    std::fs::write(
        root.join("README.md"),
        "# Top\n\n## Same heading\n\n## Same heading\n\n\
         ## Scale-out on Redis (`--redis`)\n\n\
         [ok](docs/a.md) [ok](docs/a.md#section-one) [ok](#same-heading-1)\n\
         [ok](#scale-out-on-redis---redis) ![ok](docs/pic.png \"a title\")\n\
         [web](https://example.com/missing.md) [mail](mailto:a@example.com)\n\
         `[in code](code-missing.md)` and ``a `[nested](nested-missing.md)` span``\n\n\
         ```md\n[in fence](fence-missing.md)\n```\n\n\
         [gone](docs/gone.md)\n\
         [bad anchor](#nope)\n\
         [cross bad](docs/a.md#nope)\n\
         [outside](../outside.md)\n\
         [rooted](/etc/hosts)\n\n\
         [ref]: docs/ref-missing.md\n\
         [file](file:///etc/hosts)\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/a.md"),
        "# Section one\n\n[up](../README.md#top) [up bad](../README.md#section-one)\n",
    )
    .unwrap();
    // The link that leaves must be broken even where its target exists.
    std::fs::write(dir.path.join("outside.md"), "# Outside\n").unwrap();

    let broken = broken_links(&root, &pages(&root));
    let expected = [
        "README.md:18: `docs/gone.md`",
        "README.md:19: `#nope`",
        "README.md:20: `docs/a.md#nope`",
        "README.md:21: `../outside.md`",
        "README.md:22: `/etc/hosts`",
        "README.md:24: `docs/ref-missing.md`",
        "README.md:25: `file:///etc/hosts`",
        "docs/a.md:3: `../README.md#section-one`",
    ];
    assert_eq!(
        broken.len(),
        expected.len(),
        "reported: {broken:#?}\nexpected: {expected:#?}"
    );
    for (found, want) in broken.iter().zip(expected) {
        assert!(
            found.starts_with(want),
            "reported {found:?}, expected {want:?}…"
        );
    }
}

/// README.md and docs/*.md, relative to `root`, sorted.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .map(|p| Path::new("docs").join(p.file_name().unwrap()))
            .collect();
        docs.sort();
        pages.extend(docs);
    }
    pages
}

/// One line per broken link: `page:line: `target`: why`.
fn broken_links(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(root.join(page))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", page.display()));
        for (line, target) in links(&text) {
            if let Err(why) = check(root, page, &target) {
                broken.push(format!("{}:{line}: `{target}`: {why}", page.display()));
            }
        }
    }
    broken
}

/// Whether `target`, linked from `page`, resolves.
fn check(root: &Path, page: &Path, target: &str) -> Result<(), String> {
    if let Some((scheme, _)) = target.split_once(':') {
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
        if is_scheme {
            // Absolute web links are not followed; any other scheme
            // (`file:`) points outside the repository.
            return match scheme.to_ascii_lowercase().as_str() {
                "http" | "https" | "mailto" => Ok(()),
                _ => Err(format!("a `{scheme}:` link: not a page of the repository")),
            };
        }
    }
    if target.starts_with('/') {
        return Err("starts at `/`: write it relative to the page".into());
    }
    let (path, fragment) = match target.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        let mut inside = PathBuf::new();
        let joined = page
            .parent()
            .unwrap_or(Path::new(""))
            .join(percent_decode(path));
        for part in joined.components() {
            match part {
                Component::Normal(name) => inside.push(name),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !inside.pop() {
                        return Err("leaves the repository".into());
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err("not a relative path".into());
                }
            }
        }
        inside
    };
    let full = root.join(&file);
    if !full.exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    match fragment {
        Some(fragment) if file.extension().is_some_and(|e| e == "md") => {
            let text = std::fs::read_to_string(&full).map_err(|e| e.to_string())?;
            let fragment = percent_decode(fragment);
            if heading_slugs(&text).contains(&fragment) {
                Ok(())
            } else {
                Err(format!(
                    "no heading of {} has the slug `{fragment}`",
                    file.display()
                ))
            }
        }
        // A fragment into another kind of file (a line of source) is not ours to check.
        _ => Ok(()),
    }
}

/// The page with fenced code blocks and inline code spans blanked out
/// (newlines kept, so offsets still give line numbers).
fn prose(text: &str) -> String {
    blank_code_spans(&without_fences(text))
}

/// The page with its fenced code blocks blanked out.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
        match fence {
            None if indent <= 3 && run >= 3 => {
                fence = Some((marker.unwrap(), run));
                out.push_str(&blank(line));
            }
            Some((c, n)) if marker == Some(c) && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                out.push_str(&blank(line));
            }
            Some(_) => out.push_str(&blank(line)),
            None => out.push_str(line),
        }
    }
    out
}

fn blank(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect()
}

/// Blanks every inline code span: a run of backticks up to the next run of
/// the same length within the paragraph; an unmatched run stays as text.
fn blank_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let next = text[i..].find('`').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let paragraph_end = text[i..].find("\n\n").map_or(text.len(), |n| i + n);
        let mut j = i + run;
        let mut close = None;
        while j < paragraph_end {
            if bytes[j] == b'`' {
                let r = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if r == run {
                    close = Some(j + r);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                out.push_str(&blank(&text[i..end]));
                i = end;
            }
            None => {
                out.push_str(&text[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// Every link target of a page with its line: inline links and images
/// `[text](target "title")`, and reference definitions `[id]: target`.
fn links(text: &str) -> Vec<(usize, String)> {
    let prose = prose(text);
    let line_of = |offset: usize| prose[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(n) = prose[from..].find("](") {
        let start = from + n + 2;
        let rest = &prose[start..];
        let target = if let Some(angled) = rest.strip_prefix('<') {
            angled.split('>').next().unwrap_or("")
        } else {
            // Up to the closing parenthesis (balanced) or a title.
            let mut depth = 0usize;
            let end = rest
                .char_indices()
                .find(|&(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    c => c.is_whitespace(),
                })
                .map_or(rest.len(), |(i, _)| i);
            &rest[..end]
        };
        found.push((line_of(start), target.to_string()));
        from = start;
    }
    let mut offset = 0;
    for line in prose.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() <= 3 && trimmed.starts_with('[') && !trimmed.starts_with("[^")
        {
            if let Some((label, rest)) = trimmed[1..].split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    if let Some(target) = rest.split_whitespace().next() {
                        let target = target.trim_start_matches('<').trim_end_matches('>');
                        found.push((line_of(offset), target.to_string()));
                    }
                }
            }
        }
        offset += line.len();
    }
    found.sort();
    found
}

/// The anchors GitHub gives a page's ATX headings: the heading's text
/// without its markup, lowercased, punctuation dropped, spaces as `-`; the
/// second heading with the same slug gets `-1`, the third `-2`.
fn heading_slugs(text: &str) -> HashSet<String> {
    let mut slugs = HashSet::new();
    for line in without_fences(text).lines() {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > 3 {
            continue;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&level) {
            continue;
        }
        let rest = &trimmed[level..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        // An optional closing sequence of `#`s.
        let mut title = rest.trim();
        let without = title.trim_end_matches('#');
        if without.is_empty() || without.ends_with(' ') {
            title = without.trim_end();
        }
        let base = slug(&plain(title));
        let mut candidate = base.clone();
        let mut n = 0;
        while !slugs.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
    }
    slugs
}

/// A heading's text as rendered: links become their text, code and
/// emphasis markers and HTML tags go.
fn plain(title: &str) -> String {
    let mut out = String::new();
    let mut rest = title;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .split_once("](")
            .and_then(|(text, url)| Some((text, url.split_once(')')?.1)))
        {
            Some((text, tail)) => {
                out.push_str(text);
                rest = tail;
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let mut plain = String::new();
    let mut in_tag = false;
    for c in out.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            '`' | '*' => {}
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    plain
}

/// GitHub's slug: lowercase, keep letters, digits, `-` and `_`, spaces
/// become `-`, everything else goes.
fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
