//! Where a request's token comes from.
//!
//! In order: the `Authorization: Bearer` header, on any request; then, on
//! `GET` and `HEAD` only (streams), the `token` query parameter, then the
//! cookie named by `--auth-cookie`. A publish never reads a query or cookie
//! token: a cookie must not drive a state-changing request (CSRF), and a
//! publishing token has no business in a URL.

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::Method;

/// The token a request presents, if any.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    None,
    Token(String),
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
}

/// Finds the token of `req`. `cookie` is `--auth-cookie`.
pub fn find(req: &Parts, cookie: Option<&str>) -> Presented {
    if let Some(value) = req.headers.get(AUTHORIZATION) {
        return match value.to_str().ok().and_then(bearer) {
            Some(token) => Presented::Token(token.to_owned()),
            None => Presented::Malformed,
        };
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        return Presented::None;
    }
    let query = form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
        .find(|(k, v)| k == "token" && !v.is_empty());
    if let Some((_, token)) = query {
        return Presented::Token(token.into_owned());
    }
    match cookie.and_then(|name| find_cookie(req, name)) {
        Some(token) => Presented::Token(token),
        None => Presented::None,
    }
}

/// `Bearer <token>`, the scheme in any case.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name`; a `Cookie` header that cannot be read is
/// treated as holding no cookie.
fn find_cookie(req: &Parts, name: &str) -> Option<String> {
    req.headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    fn token(s: &str) -> Presented {
        Presented::Token(s.to_owned())
    }

    #[test]
    fn header_then_query_then_cookie() {
        let all = [("authorization", "Bearer h"), ("cookie", "t=c")];
        assert_eq!(
            find(&parts("GET", "/e?token=q", &all), Some("t")),
            token("h")
        );
        let no_header = [("cookie", "a=1; t=c")];
        assert_eq!(
            find(&parts("GET", "/e?token=q", &no_header), Some("t")),
            token("q")
        );
        assert_eq!(
            find(&parts("HEAD", "/e", &no_header), Some("t")),
            token("c")
        );
        assert_eq!(find(&parts("GET", "/e", &no_header), None), Presented::None);
    }

    #[test]
    fn publish_reads_only_the_header() {
        let cookie = [("cookie", "t=c")];
        assert_eq!(
            find(&parts("POST", "/p?token=q", &cookie), Some("t")),
            Presented::None
        );
        let header = [("authorization", "bearer  h ")];
        assert_eq!(find(&parts("POST", "/p", &header), Some("t")), token("h"));
    }

    #[test]
    fn other_schemes_and_garbage_are_malformed_or_absent() {
        for value in ["Basic dXNlcg==", "Bearer", "Bearer   ", "token"] {
            let h = [("authorization", value)];
            assert_eq!(
                find(&parts("GET", "/e", &h), None),
                Presented::Malformed,
                "{value}"
            );
        }
        let garbage = [("cookie", ";;==;t;=x; t; t=\"\"")];
        assert_eq!(
            find(&parts("GET", "/e?token=", &garbage), Some("t")),
            Presented::None
        );
    }
}
