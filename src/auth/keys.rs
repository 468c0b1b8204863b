//! The keys a JWT may be signed with, and the one function that checks a
//! token against them.
//!
//! Each key carries the algorithms its own type allows (an HMAC secret the
//! HS family, an RSA key RS*/PS*, a P-256 key ES256, a P-384 key ES384, an
//! Ed25519 key EdDSA). A token is only ever checked with keys whose list
//! holds the token's `alg`: the token cannot choose the algorithm, so
//! `alg: none` and an HS256 token signed with a public key's bytes find no
//! key and are refused. Signatures are checked by `jsonwebtoken`; nothing
//! here compares signature bytes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use super::claims::Claims;

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes;
/// this bounds the work a stranger can ask for.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// The JWK `kid`, for keys from `--jwks-file`.
    kid: Option<String>,
    key: DecodingKey,
    /// The algorithms this key may verify, decided by the key, never by a
    /// token.
    algorithms: Vec<Algorithm>,
}

/// Why a token was refused, for the debug log only: the client is never
/// told which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLong,
    /// Not three base64 parts with a JSON header, or an unknown `alg`.
    Malformed,
    /// No configured key may verify this `alg` (with this `kid`).
    NoKey,
    /// The token names a `kid` no configured key has: with `--jwks-url`,
    /// a key the provider may just have rotated in.
    UnknownKid,
    /// Bad signature, expired, not yet valid, wrong audience or issuer, or
    /// claims of the wrong shape.
    Invalid,
    /// Less than a second left.
    ExpiresTooSoon,
}

impl Key {
    /// An HMAC secret (`--jwt-secret`).
    pub fn secret(secret: &[u8]) -> Result<Key, String> {
        let key = DecodingKey::from_secret(secret).map_err(|_| "the secret is empty".to_owned())?;
        Ok(Key::new(
            None,
            key,
            AlgorithmFamily::Hmac.algorithms().to_vec(),
        ))
    }

    /// A PEM public key (`--jwt-public-key`): RSA, EC (P-256, P-384) or
    /// Ed25519, told apart by the key itself.
    pub fn pem(path: &Path) -> Result<Key, String> {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // `jsonwebtoken` reads an RSA private key as a verification key
        // that then refuses every token; say so at startup instead.
        if String::from_utf8_lossy(&pem).contains("PRIVATE KEY-----") {
            return Err(format!(
                "{}: a private key; give its public half (openssl pkey -in KEY -pubout)",
                path.display()
            ));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Key::new(
                None,
                key,
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            ));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            // An uncompressed point: 1 + 2 × 32 bytes on P-256, 1 + 2 × 48 on P-384.
            let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => return Err(format!("{}: only P-256 and P-384 EC keys", path.display())),
            };
            return Ok(Key::new(None, key, vec![alg]));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
            return Ok(Key::new(None, key, vec![Algorithm::EdDSA]));
        }
        Err(format!(
            "{}: not a PEM public key (RSA, EC P-256/P-384 or Ed25519)",
            path.display()
        ))
    }

    fn new(kid: Option<String>, key: DecodingKey, algorithms: Vec<Algorithm>) -> Key {
        Key {
            kid,
            key,
            algorithms,
        }
    }
}

/// Reads a JWK Set file (see [`parse_set`]).
pub fn jwks(path: &PathBuf) -> Result<Vec<Key>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_set(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a JWK Set (a `--jwks-file`, or what `--jwks-url` answered). Keys
/// herald cannot or must not verify with are skipped: a key marked for
/// encryption (`"use":"enc"`, or `key_ops` without `verify`), a curve or key
/// type it does not know (P-521, secp256k1, a post-quantum `AKP`), so a
/// provider's whole set can be used as it is. A set with no usable key is
/// an error.
pub fn parse_set(text: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if !for_signatures(&jwk.common) {
            continue;
        }
        let allowed: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
            AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac.algorithms().to_vec(),
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => continue,
            },
            _ => continue,
        };
        // A JWK's own `alg` narrows the family to that one algorithm.
        let allowed = match jwk.common.key_algorithm {
            Some(alg) => match format!("{alg:?}").parse::<Algorithm>() {
                Ok(alg) if allowed.contains(&alg) => vec![alg],
                _ => continue,
            },
            None => allowed,
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        keys.push(Key::new(jwk.common.key_id.clone(), key, allowed));
    }
    if keys.is_empty() {
        return Err("no usable key in the set".to_owned());
    }
    Ok(keys)
}

/// RFC 7517 §4.2-4.3: a key is for checking signatures unless its `use` or
/// its `key_ops` say otherwise.
fn for_signatures(common: &CommonParameters) -> bool {
    let usable = match &common.public_key_use {
        None | Some(PublicKeyUse::Signature) => true,
        Some(_) => false,
    };
    let verifies = match &common.key_operations {
        None => true,
        Some(ops) => ops.iter().any(|op| matches!(op, KeyOperations::Verify)),
    };
    usable && verifies
}

/// What every token must satisfy besides its signature.
pub struct Checks {
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// Verifies `token` with the first of `keys` that may and does accept it.
/// `exp` is required and checked with no leeway, `nbf` when present, `aud`
/// and `iss` when configured; a token with less than a second left is
/// refused.
pub fn verify(token: &str, keys: &[Key], checks: &Checks) -> Result<Claims, Refusal> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
    let mut candidates = keys
        .iter()
        .filter(|k| k.algorithms.contains(&header.alg))
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .peekable();
    if candidates.peek().is_none() {
        let unknown = header
            .kid
            .as_ref()
            .is_some_and(|kid| !keys.iter().any(|k| k.kid.as_ref() == Some(kid)));
        return Err(if unknown {
            Refusal::UnknownKid
        } else {
            Refusal::NoKey
        });
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = 0;
    validation.validate_nbf = true;
    // A configured audience or issuer must be present, not just match when
    // it happens to be.
    let mut required = vec!["exp"];
    match &checks.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &checks.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    let claims = candidates
        .find_map(|k| jsonwebtoken::decode::<Claims>(token, &k.key, &validation).ok())
        .ok_or(Refusal::Invalid)?
        .claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if u128::from(claims.exp) * 1000 < now.as_millis() + 1000 {
        return Err(Refusal::ExpiresTooSoon);
    }
    Ok(claims)
}
