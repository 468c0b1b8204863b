//! The files of `web/`, built into the binary so `cargo run` works from any
//! directory. `/` is `index.html`; other files are served under their names.
//! Only files embedded at build time can be named, so no path reaches
//! outside `web/`. Among them is herald.js, the browser client (SPEC §16),
//! with its declarations, herald.d.ts.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue};
use include_dir::{include_dir, Dir, File};

use crate::body::{Body, Response};

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// The embedded file a request path names, if any.
pub fn find(path: &str) -> Option<&'static File<'static>> {
    let name = match path {
        "/" => "index.html",
        _ => path.strip_prefix('/')?,
    };
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    WEB.get_file(name)
}

pub fn serve(file: &'static File<'static>, head: bool) -> Response {
    let body = if head {
        Body::Empty
    } else {
        Body::Full(bytes::Bytes::from_static(file.contents()))
    };
    let mut response = http::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if file.path().to_str() == Some("herald.js") {
        // Where Deno and other TypeScript-aware importers find its types.
        headers.insert(
            HeaderName::from_static("x-typescript-types"),
            HeaderValue::from_static("./herald.d.ts"),
        );
    }
    response
}

fn content_type(file: &File<'_>) -> &'static str {
    match file.path().extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        // herald.d.ts, the declarations of herald.js
        Some("ts") => "application/typescript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_the_index_page() {
        assert_eq!(find("/").unwrap().path().to_str(), Some("index.html"));
    }

    #[test]
    fn paths_cannot_leave_web() {
        for path in [
            "/../Cargo.toml",
            "/..",
            "//index.html",
            "/./index.html",
            "/%2e%2e/Cargo.toml",
        ] {
            assert!(find(path).is_none(), "{path}");
        }
    }
}
