//! Keys of every kind: `--jwt-public-key` PEM files (RSA with RS* and PS*,
//! EC P-256 and P-384, Ed25519), `--jwt-secret` rotation and HS384/512, and
//! a `--jwks-file` selected by `kid` and reloaded.

use herald::config::Secret;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use super::{answer, claims, key_pair, sign_with, spawn_auth_with, Kind};
use crate::helpers::TestApp;

async fn status_with(app: &TestApp, token: &str) -> u16 {
    let request = app
        .client
        .get(app.url("/events/private-k"))
        .bearer_auth(token);
    answer(request).await.0
}

/// `token` with its header replaced by `header` (the signature unchanged).
fn relabel(token: &str, header: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn grant() -> serde_json::Value {
    claims(600, json!({"subscribe": ["private-k"]}))
}

#[tokio::test]
async fn pem_public_keys_of_every_kind_verify_their_algorithms() {
    let kinds = [
        (
            Kind::Rsa,
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ][..],
        ),
        (Kind::P256, &[Algorithm::ES256]),
        (Kind::P384, &[Algorithm::ES384]),
        (Kind::Ed25519, &[Algorithm::EdDSA]),
    ];
    let app = spawn_auth_with(|c| {
        c.jwt_public_key = kinds
            .iter()
            .map(|(k, _)| key_pair(*k).public.clone())
            .collect();
    })
    .await;
    for (kind, algorithms) in kinds {
        let key = key_pair(kind).encoding(kind);
        for alg in algorithms {
            let token = sign_with(*alg, &key, &grant(), None);
            assert_eq!(status_with(&app, &token).await, 200, "{kind:?} {alg:?}");
        }
    }
    // The P-256 key cannot be used as ES384, and no key accepts HS256 here
    // but the secret.
    let p256 = key_pair(Kind::P256).encoding(Kind::P256);
    let es256 = sign_with(Algorithm::ES256, &p256, &grant(), None);
    let ec_mismatch = relabel(&es256, json!({"alg": "ES384", "typ": "JWT"}));
    assert_eq!(status_with(&app, &ec_mismatch).await, 401);
}

#[tokio::test]
async fn a_key_only_verifies_its_own_tokens() {
    let app = spawn_auth_with(|c| {
        c.jwt_secret = vec![];
        c.jwt_public_key = vec![key_pair(Kind::P256).public.clone()];
    })
    .await;
    let rsa = key_pair(Kind::Rsa).encoding(Kind::Rsa);
    let ed = key_pair(Kind::Ed25519).encoding(Kind::Ed25519);
    assert_eq!(
        status_with(&app, &sign_with(Algorithm::RS256, &rsa, &grant(), None)).await,
        401
    );
    assert_eq!(
        status_with(&app, &sign_with(Algorithm::EdDSA, &ed, &grant(), None)).await,
        401
    );
    let hs = EncodingKey::from_secret(super::SECRET.as_bytes()).unwrap();
    assert_eq!(
        status_with(&app, &sign_with(Algorithm::HS256, &hs, &grant(), None)).await,
        401
    );
}

#[tokio::test]
async fn secrets_rotate_and_take_every_hs_algorithm() {
    let app = spawn_auth_with(|c| {
        c.jwt_secret = vec![Secret::new("old-secret"), Secret::new("new-secret")];
    })
    .await;
    for secret in ["old-secret", "new-secret"] {
        let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign_with(alg, &key, &grant(), None);
            assert_eq!(status_with(&app, &token).await, 200, "{secret} {alg:?}");
        }
    }
}

fn jwk(kind: Kind, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key_pair(kind).encoding(kind), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

#[tokio::test]
async fn a_jwks_file_is_selected_by_kid_and_reloaded() {
    let path = std::env::temp_dir().join(format!("herald-jwks-{}.json", std::process::id()));
    let write = |keys: Vec<Jwk>| {
        std::fs::write(&path, serde_json::to_string(&JwkSet { keys }).unwrap()).unwrap();
    };
    write(vec![
        jwk(Kind::Rsa, Algorithm::RS256, "rsa-1"),
        jwk(Kind::P256, Algorithm::ES256, "ec-1"),
    ]);
    let app = spawn_auth_with(|c| c.jwks_file = Some(path.clone())).await;
    let rsa = key_pair(Kind::Rsa).encoding(Kind::Rsa);
    let ed = key_pair(Kind::Ed25519).encoding(Kind::Ed25519);
    let with_kid = |alg, key: &EncodingKey, kid| sign_with(alg, key, &grant(), Some(kid));
    assert_eq!(
        status_with(&app, &with_kid(Algorithm::RS256, &rsa, "rsa-1")).await,
        200
    );
    assert_eq!(
        status_with(&app, &with_kid(Algorithm::RS256, &rsa, "ec-1")).await,
        401
    );
    assert_eq!(
        status_with(&app, &with_kid(Algorithm::RS256, &rsa, "nope")).await,
        401
    );
    // The JWK's `alg` pins the algorithm: RS512 with an RS256 key is refused.
    assert_eq!(
        status_with(&app, &with_kid(Algorithm::RS512, &rsa, "rsa-1")).await,
        401
    );
    let ed_token = with_kid(Algorithm::EdDSA, &ed, "ed-1");
    assert_eq!(
        status_with(&app, &ed_token).await,
        401,
        "not in the set yet"
    );

    write(vec![jwk(Kind::Ed25519, Algorithm::EdDSA, "ed-1")]);
    assert_eq!(app.state.auth.reload_jwks(), Ok(1));
    assert_eq!(status_with(&app, &ed_token).await, 200);
    assert_eq!(
        status_with(&app, &with_kid(Algorithm::RS256, &rsa, "rsa-1")).await,
        401
    );
    assert_eq!(
        status_with(&app, &super::token(&["private-k"], &[])).await,
        200,
        "the secret stays"
    );

    std::fs::write(&path, "{not json").unwrap();
    assert!(app.state.auth.reload_jwks().is_err());
    assert_eq!(
        status_with(&app, &ed_token).await,
        200,
        "a bad file keeps the keys in use"
    );
    let _ = std::fs::remove_file(&path);
}

/// A provider's JWK Set as published (Keycloak, for one, lists an
/// encryption key beside its signing keys): herald starts with it, checks
/// tokens with its signing keys, and never with a key marked for
/// encryption or of a type it does not know.
#[tokio::test]
async fn a_providers_jwks_file_is_used_whole_with_its_encryption_and_unknown_keys_skipped() {
    let path = std::env::temp_dir().join(format!("herald-jwks-mixed-{}.json", std::process::id()));
    let rsa = key_pair(Kind::Rsa).encoding(Kind::Rsa);
    let signing = jwk(Kind::Rsa, Algorithm::RS256, "sig-1");
    let mut encryption = serde_json::to_value(jwk(Kind::Rsa, Algorithm::RS256, "enc-1")).unwrap();
    encryption["use"] = json!("enc");
    encryption["alg"] = json!("RSA-OAEP");
    let mut wrap_only = serde_json::to_value(jwk(Kind::Rsa, Algorithm::RS256, "wrap-1")).unwrap();
    wrap_only["key_ops"] = json!(["wrapKey"]);
    let set = json!({"keys": [
        encryption,
        wrap_only,
        {"kty": "EC", "crv": "secp256k1", "kid": "k1", "use": "sig",
         "x": "WfY7Px6AgH6x-_dgAoRbg8weYRJA36ON-gQiFnETrqw",
         "y": "IzFx3BUGztK0cyDStiunXbrZYYTHKbFmXvuBMRzLFNo"},
        {"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq", "pub": "AAAA"},
        signing,
    ]});
    std::fs::write(&path, set.to_string()).unwrap();
    let app = spawn_auth_with(|c| c.jwks_file = Some(path.clone())).await;
    assert_eq!(
        app.state.auth.reload_jwks(),
        Ok(1),
        "one key of five verifies"
    );

    let with_kid = |kid| sign_with(Algorithm::RS256, &rsa, &grant(), Some(kid));
    assert_eq!(status_with(&app, &with_kid("sig-1")).await, 200);
    for kid in ["enc-1", "wrap-1", "k1", "pq"] {
        assert_eq!(status_with(&app, &with_kid(kid)).await, 401, "{kid}");
    }
    let _ = std::fs::remove_file(&path);
}
