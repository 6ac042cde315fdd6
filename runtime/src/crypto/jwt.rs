//! Signing our JWTs and verifying JWTs: the signature with exactly the key's algorithm (so
//! never `none`, never HS/RS confusion), then the claims against an explicit `now`.

use super::key::LoadedKey;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Serialize;
use serde_json::Value;

/// Each kind of token we sign has its own `typ`, checked wherever a token is accepted, so one
/// kind can never be presented as another.
///
/// The `client_credentials` access token: the only token of ours that authenticates a client.
pub const TYP_CLIENT_TOKEN: &str = "client-at+jwt";
/// The access token issued with an ID token by the CIBA grant (RFC 9068), for resource
/// servers only: it never authenticates a client here.
pub const TYP_USER_ACCESS_TOKEN: &str = "at+jwt";
pub const TYP_PERMISSION_TOKEN: &str = "permission+jwt";
pub const TYP_ID_TOKEN: &str = "JWT";

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: i64 = 30;

pub fn sign(
    key: &LoadedKey,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(alg_of(key));
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding)
}

/// Verify only the signature, accepting exactly `alg`. Claims are checked by [`check_claims`].
pub fn verify_signature(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<(Header, Value), &'static str> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, key, &v).map_err(|e| {
        // jsonwebtoken reads the claims only once the header and the signature hold, and its
        // own reading refuses a repeated registered claim (`exp`, `sub`, ...): a JSON error
        // after a good header is a signed payload that cannot be read, so say why.
        let signed = matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Json(_))
            && jsonwebtoken::decode_header(token).is_ok();
        if signed {
            strict_payload(token)
                .err()
                .unwrap_or("claims are not a JSON object")
        } else {
            "signature or algorithm is invalid"
        }
    })?;
    if !data.claims.is_object() {
        return Err("claims are not a JSON object");
    }
    strict_payload(token)?;
    Ok((data.header, data.claims))
}

/// The error of a signed payload that repeats a claim (answered 400 `invalid_request`).
pub const REPEATED_CLAIM: &str = "a claim is repeated";

/// The payload under the rules for client JSON ([`ciba_domain::json`]): a repeated claim
/// (`{"decision":"decline","decision":"approve"}`) reads differently to different parsers,
/// so a signed document that holds one is refused.
fn strict_payload(token: &str) -> Result<(), &'static str> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or("malformed JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| "malformed JWT")?;
    ciba_domain::json::parse(&bytes)
        .map(|_| ())
        .map_err(|e| match e {
            ciba_domain::json::JsonError::DuplicateKey(_) => REPEATED_CLAIM,
            ciba_domain::json::JsonError::TooDeep => "claims nest too deeply",
            ciba_domain::json::JsonError::Syntax => "claims are not JSON",
        })
}

pub fn alg_of(key: &LoadedKey) -> Algorithm {
    match key.alg {
        ciba_domain::client::SigningAlg::Es256 => Algorithm::ES256,
        ciba_domain::client::SigningAlg::Rs256 => Algorithm::RS256,
        ciba_domain::client::SigningAlg::Ps256 => Algorithm::PS256,
    }
}

/// What a token's claims must satisfy.
pub struct Expect<'a> {
    /// Required `iss`, when the issuer is known in advance.
    pub issuer: Option<&'a str>,
    /// `aud` must contain at least one of these (string or array form).
    pub audiences: &'a [&'a str],
    pub now: i64,
    /// If set, `exp - iat` (or `exp - now` without `iat`) may not exceed this.
    pub max_lifetime: Option<i64>,
    pub require_jti: bool,
}

/// The claims of a token this server issued for its own use (client access token,
/// permission token): `iss` and `aud` are `issuer`, a `jti` is present.
pub fn check_own_claims(claims: &Value, issuer: &str, now: i64) -> Result<(), &'static str> {
    check_claims(
        claims,
        &Expect {
            issuer: Some(issuer),
            audiences: &[issuer],
            now,
            max_lifetime: None,
            require_jti: true,
        },
    )
}

pub fn check_claims(claims: &Value, expect: &Expect<'_>) -> Result<(), &'static str> {
    let num = |name: &str| claims.get(name).and_then(Value::as_i64);
    if let Some(iss) = expect.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss) {
            return Err("iss is not the expected issuer");
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => expect.audiences.contains(&a.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expect.audiences.contains(&a)),
        _ => false,
    };
    if !aud_ok {
        return Err("aud does not name this server");
    }
    let exp = num("exp").ok_or("exp is missing")?;
    if exp.saturating_add(LEEWAY) <= expect.now {
        return Err("token has expired");
    }
    if let Some(nbf) = num("nbf") {
        if nbf > expect.now + LEEWAY {
            return Err("token is not valid yet");
        }
    }
    let iat = match claims.get("iat") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or("iat is not a number")?),
    };
    if let Some(iat) = iat {
        if iat > expect.now + LEEWAY {
            return Err("iat is in the future");
        }
    }
    if let Some(max) = expect.max_lifetime {
        if exp.saturating_sub(iat.unwrap_or(expect.now)) > max {
            return Err("token lifetime is too long");
        }
    }
    let jti = claims.get("jti").and_then(Value::as_str);
    if jti.is_some_and(|j| j.len() > ciba_domain::ids::MAX_ID_LEN) {
        return Err("jti is too long");
    }
    if expect.require_jti && jti.is_none_or(str::is_empty) {
        return Err("jti is missing");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: Some("https://iss"),
            audiences: &["https://iss"],
            now,
            max_lifetime: Some(300),
            require_jti: true,
        }
    }

    #[test]
    fn accepts_good_claims() {
        let c = json!({"iss": "https://iss", "aud": ["x", "https://iss"], "exp": 1100, "iat": 1000, "jti": "j"});
        assert_eq!(check_claims(&c, &expect(1000)), Ok(()));
    }

    #[test]
    fn rejects_each_bad_claim() {
        let base = json!({"iss": "https://iss", "aud": "https://iss", "exp": 1100, "iat": 1000, "jti": "j"});
        let cases = [
            ("iss", json!("https://other")),
            ("aud", json!("https://other")),
            ("exp", json!(900)),
            ("iat", json!(2000)),
            ("nbf", json!(2000)),
            ("jti", json!("")),
        ];
        for (field, value) in cases {
            let mut c = base.clone();
            c[field] = value;
            assert!(check_claims(&c, &expect(1000)).is_err(), "{field}");
        }
        let mut long = base.clone();
        long["exp"] = json!(5000);
        assert_eq!(
            check_claims(&long, &expect(1000)),
            Err("token lifetime is too long")
        );
        let mut no_exp = base;
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check_claims(&no_exp, &expect(1000)), Err("exp is missing"));
    }
}
