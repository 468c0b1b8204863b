//! Against the real binary: `herald token`, secrets from the environment,
//! nothing secret in the JSON log, SIGHUP reloading `--jwks-file`, and
//! startup errors for configurations that cannot work.

use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::Algorithm;
use serde_json::json;

use super::{claims, key_pair, sign_with, Kind};
use crate::helpers::{Binary, WAIT};

const ENV_SECRET: &str = "env-secret-never-logged-7f3a";
const ENV_PUBLISH: &str = "env-publish-never-logged-91bc";
const ENV_PUBLISH_OLD: &str = "env-old-publish-never-logged-c4d0";

/// Runs `herald token …` and returns the token it printed.
fn mint(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("token")
        .args(args)
        .env("HERALD_JWT_SECRET", ENV_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn herald_token_mints_what_the_server_accepts_and_nothing_secret_is_logged() {
    for format in ["json", "text"] {
        mint_use_and_check_the_log(format).await;
    }
}

/// Secrets from the environment, a minted token used from the header, the
/// query and a cookie, bad ones refused: then no log line of `format`
/// holds a secret, a token, a query string or a cookie.
async fn mint_use_and_check_the_log(format: &str) {
    // Two publish tokens in the variable: an old and a new one overlap.
    let publish_tokens = format!("{ENV_PUBLISH_OLD},{ENV_PUBLISH}");
    let env = [
        ("HERALD_JWT_SECRET", ENV_SECRET),
        ("HERALD_PUBLISH_TOKEN", publish_tokens.as_str()),
    ];
    let args = [
        "--log-format",
        format,
        "--auth-cookie",
        "herald_token",
        "--cors-origin",
        "http://a.test",
    ];
    let bin = Binary::start_logging(&args, &env, "debug").await;
    let token = mint(&[
        "--sub",
        "42",
        "--subscribe",
        "private-user-42*",
        "--publish",
        "chat",
        "--info",
        r#"{"name":"Ada"}"#,
        "--ttl",
        "5m",
    ]);
    let c = &bin.client;
    let stream = |query: &str| c.get(bin.url(&format!("/events/private-user-42{query}")));
    let ok = stream("").bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    drop(ok);
    assert_eq!(
        stream(&format!("?token={token}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let by_cookie = stream("").header("cookie", format!("herald_token={token}"));
    assert_eq!(by_cookie.send().await.unwrap().status(), 200);
    let publish = c
        .post(bin.url("/publish/chat"))
        .bearer_auth(&token)
        .body("hi");
    assert_eq!(publish.send().await.unwrap().status(), 200);
    for publish_token in [ENV_PUBLISH_OLD, ENV_PUBLISH] {
        let publish = c
            .post(bin.url("/publish/news"))
            .bearer_auth(publish_token)
            .body("hi");
        assert_eq!(publish.send().await.unwrap().status(), 200);
    }
    let bad = format!("{token}x");
    assert_eq!(
        stream(&format!("?token={bad}"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        stream("").bearer_auth(&bad).send().await.unwrap().status(),
        401
    );
    let garbage_cookie = stream("").header("cookie", "herald_token=garbage-cookie-value");
    assert_eq!(garbage_cookie.send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(bin.url("/healthz")).send().await.unwrap().status(),
        200
    );

    // A query string that is not a token is not logged either.
    let other_query = stream("?token=&utm=query-never-logged-5d2e");
    assert_eq!(other_query.send().await.unwrap().status(), 401);
    let refused_publish = c
        .post(bin.url("/publish/news?token=publish-query-never-logged"))
        .header("cookie", "herald_token=publish-cookie-never-logged")
        .bearer_auth("header-token-never-logged")
        .body("x");
    assert_eq!(refused_publish.send().await.unwrap().status(), 401);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = bin.logs.lock().unwrap().join("\n");
    assert!(logs.contains("token refused"), "debug logs are on:\n{logs}");
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        ENV_SECRET,
        ENV_PUBLISH,
        ENV_PUBLISH_OLD,
        signature,
        &bad,
        "garbage-cookie-value",
        "query-never-logged",
        "publish-query-never-logged",
        "publish-cookie-never-logged",
        "header-token-never-logged",
        "?token",
        "token=",
        "herald_token",
    ] {
        assert!(
            !logs.contains(secret),
            "{format}: {secret:?} in the log:\n{logs}"
        );
    }
    if format == "json" {
        for line in logs.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("every log line is JSON");
        }
    }
}

#[tokio::test]
async fn herald_token_refuses_bad_grants_and_signs_with_a_private_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["token", "--subscribe", "a*b"])
        .env("HERALD_JWT_SECRET", ENV_SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a*b"));
    let pair = key_pair(Kind::Ed25519);
    let public = pair.public.to_str().unwrap();
    let bin = Binary::start(&["--jwt-public-key", public]).await;
    let private = pair.private.to_str().unwrap();
    signs_what_the_server_accepts(&bin, private).await;
}

/// A token `herald token --private-key private` mints opens a private
/// stream on `bin`, which has the public half.
async fn signs_what_the_server_accepts(bin: &Binary, private: &str) {
    let token = mint(&["--private-key", private, "--subscribe", "private-x"]);
    let request = bin
        .client
        .get(bin.url("/events/private-x"))
        .bearer_auth(token);
    assert_eq!(request.send().await.unwrap().status(), 200);
}

/// `herald token` signs with what the key can: ES384 for a P-384 key
/// without `--alg`; a public, SEC1 or encrypted key is refused with a clear
/// message.
#[tokio::test]
async fn herald_token_signs_es384_with_a_p384_key_and_refuses_a_public_key() {
    let pair = key_pair(Kind::P384);
    let bin = Binary::start(&["--jwt-public-key", pair.public.to_str().unwrap()]).await;
    let private = pair.private.to_str().unwrap();
    signs_what_the_server_accepts(&bin, private).await;
    let refused = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("token")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let public = key_pair(Kind::Rsa).public.to_str().unwrap();
    assert!(refused(&["--private-key", public]).contains("private key"));
    // `openssl ecparam -genkey` and `openssl ec` write SEC1; an encrypted
    // key needs a passphrase: each refusal says how to convert the key.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("auth-keys");
    let sec1 = dir.join("p384.sec1.pem");
    let encrypted = dir.join("p384.encrypted.pem");
    for (args, out) in [
        (&["ec"][..], &sec1),
        (&["pkcs8", "-topk8", "-passout", "pass:x"], &encrypted),
    ] {
        let made = std::process::Command::new("openssl")
            .args(args)
            .args(["-in", private, "-out", out.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl {args:?}");
    }
    let stderr = refused(&["--private-key", sec1.to_str().unwrap()]);
    assert!(
        stderr.contains("SEC1") && stderr.contains("openssl pkcs8 -topk8"),
        "{stderr}"
    );
    let stderr = refused(&["--private-key", encrypted.to_str().unwrap()]);
    assert!(
        stderr.contains("encrypted") && stderr.contains("openssl pkey"),
        "{stderr}"
    );
    let p256 = key_pair(Kind::P256).private.to_str().unwrap();
    let stderr = refused(&["--private-key", p256, "--alg", "ES384"]);
    assert!(stderr.contains("does not match the key"), "{stderr}");
}

#[tokio::test]
async fn sighup_reloads_the_jwks_file() {
    let path = std::env::temp_dir().join(format!("herald-jwks-hup-{}.json", std::process::id()));
    let set = |kind: Kind, alg: Algorithm, kid: &str| {
        let key = key_pair(kind).encoding(kind);
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap()
    };
    std::fs::write(&path, set(Kind::P256, Algorithm::ES256, "old")).unwrap();
    let bin = Binary::start(&["--jwks-file", path.to_str().unwrap()]).await;
    let ed = key_pair(Kind::Ed25519).encoding(Kind::Ed25519);
    let token = sign_with(
        Algorithm::EdDSA,
        &ed,
        &claims(600, json!({"subscribe": ["private-r"]})),
        Some("new"),
    );
    let status = || async {
        let request = bin
            .client
            .get(bin.url("/events/private-r"))
            .bearer_auth(&token);
        request.send().await.unwrap().status()
    };
    assert_eq!(status().await, 401);
    std::fs::write(&path, set(Kind::Ed25519, Algorithm::EdDSA, "new")).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &bin.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + WAIT;
    while status().await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key is never used"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn configurations_that_cannot_work_fail_at_startup() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("HERALD_JWT_SECRET", "s")
            .output()
            .unwrap()
    };
    for (args, says) in [
        (&["--auth-cookie", "t"][..], "--cors-origin"),
        (
            &["--jwt-public-key", "/nonexistent.pem"],
            "--jwt-public-key",
        ),
        (&["--jwks-file", "/nonexistent.json"], "--jwks-file"),
        // A private key where the public one belongs used to start a
        // server that refused every token.
        (
            &[
                "--jwt-public-key",
                key_pair(Kind::Rsa).private.to_str().unwrap(),
            ],
            "a private key",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let help = run(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Give secrets (--publish-token, --jwt-secret) as environment variables"));
    assert!(
        !help.contains("HERALD_JWT_SECRET=s"),
        "--help never shows a secret's value"
    );
}
