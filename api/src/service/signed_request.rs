//! Signed authentication requests (CIBA Core §7.1.1, contract §11): the parameters of a
//! `bc-authorize` request as the claims of a JWS by one of the client's registered keys,
//! `iss` the client, `aud` this server, short-lived, its `jti` used once.

use crate::error::{oauth_error, ApiResult};
use crate::http::form::Form;
use crate::state::AppState;
use ciba_domain::client::Client;
use ciba_domain::error::{ErrorCode, OAuthError};
use ciba_runtime::crypto::jwk_set::FAPI_ALGS;
use ciba_runtime::crypto::jwt::{self, Expect, LEEWAY};
use serde_json::Value;

/// The longest a signed request may be valid (`exp - nbf`), and the oldest its `nbf` may be.
pub const MAX_LIFETIME: i64 = 3600;

/// What may stand beside `request` in the form: client authentication only.
const OUTSIDE: [&str; 5] = [
    "request",
    "client_id",
    "client_assertion",
    "client_assertion_type",
    "client_secret",
];

/// Claims of the JWS itself, not parameters of the request.
const ENVELOPE: [&str; 8] = [
    "iss",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "request",
    "request_uri",
];

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> crate::error::ApiError {
    OAuthError::invalid_request(description).into()
}

/// The request's parameters: from the signed `request` when there is one (the form then
/// holds nothing else but client authentication), else the form itself. A `fapi-ciba`
/// client must sign its requests.
pub async fn parameters(
    state: &AppState,
    form: Form,
    client: &Client,
    endpoint: &str,
    now: i64,
) -> ApiResult<Form> {
    let Some(jws) = form.get("request")? else {
        if client.is_fapi() {
            return Err(invalid(
                "a fapi-ciba client must send its authentication request signed (request)",
            ));
        }
        return Ok(form);
    };
    if let Some(name) = form.names().find(|n| !OUTSIDE.contains(n)) {
        return Err(invalid(format!(
            "{name} must be a claim of the signed request, not a parameter beside it"
        )));
    }
    let claims = crate::auth::verify_with_client_keys(state, client, jws, &FAPI_ALGS, now)
        .await
        .map_err(|e| invalid(format!("request: {e}")))?;
    let audiences = [state.config.issuer.as_str(), endpoint];
    check_envelope(&claims, &client.id, &audiences, now)
        .map_err(|e| invalid(format!("request: {e}")))?;
    let pairs = request_parameters(&claims)?;
    if !crate::auth::use_claims_jti(state, "request", &client.id, &claims, now).await? {
        return Err(invalid("request: its jti was already used"));
    }
    Ok(Form::from_pairs(pairs))
}

/// `iss` the client, `aud` this server, `iat`, `nbf` and `exp` present and current, valid
/// for at most [`MAX_LIFETIME`], a `jti`.
pub fn check_envelope(
    claims: &Value,
    client_id: &str,
    audiences: &[&str],
    now: i64,
) -> Result<(), &'static str> {
    jwt::check_claims(
        claims,
        &Expect {
            issuer: Some(client_id),
            audiences,
            now,
            max_lifetime: None,
            require_jti: true,
        },
    )?;
    let num = |name: &str| claims.get(name).and_then(Value::as_i64);
    num("iat").ok_or("iat is missing")?;
    let nbf = num("nbf").ok_or("nbf is missing")?;
    let exp = num("exp").ok_or("exp is missing")?;
    if exp.saturating_sub(nbf) > MAX_LIFETIME {
        return Err("exp is more than 60 minutes after nbf");
    }
    if nbf < now - MAX_LIFETIME - LEEWAY {
        return Err("nbf is more than 60 minutes in the past");
    }
    Ok(())
}

/// The authentication parameters the claims carry, as form values: strings as they are,
/// numbers (`requested_expiry`) in decimal; anything else is refused.
pub(crate) fn request_parameters(claims: &Value) -> ApiResult<Vec<(String, String)>> {
    let Some(map) = claims.as_object() else {
        return Err(invalid("request: claims are not an object"));
    };
    let mut pairs = Vec::new();
    for (name, value) in map.iter().filter(|(k, _)| !ENVELOPE.contains(&k.as_str())) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() => n.to_string(),
            _ => {
                return Err(oauth_error(
                    ErrorCode::InvalidRequest,
                    "request: every parameter claim must be a string (requested_expiry may be a number)",
                ))
            }
        };
        pairs.push((name.clone(), text));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const AUD: [&str; 1] = ["https://issuer"];

    fn good() -> Value {
        json!({"iss": "c1", "aud": "https://issuer", "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": "j1",
               "scope": "openid", "requested_expiry": 120})
    }

    #[test]
    fn accepts_a_current_envelope() {
        assert_eq!(check_envelope(&good(), "c1", &AUD, NOW), Ok(()));
    }

    #[test]
    fn refuses_each_bad_envelope() {
        let cases: [(&str, Value); 8] = [
            ("iss", json!("c2")),
            ("aud", json!("https://elsewhere")),
            ("exp", json!(NOW - 100)),
            ("exp", json!(NOW + 3601)),
            ("nbf", json!(NOW + 600)),
            ("nbf", json!(NOW - 4000)),
            ("iat", json!(NOW + 600)),
            ("jti", json!("")),
        ];
        for (claim, value) in cases {
            let mut c = good();
            c[claim] = value.clone();
            assert!(
                check_envelope(&c, "c1", &AUD, NOW).is_err(),
                "{claim}={value}"
            );
        }
        for claim in ["iat", "nbf", "exp", "jti"] {
            let mut c = good();
            c.as_object_mut().unwrap().remove(claim);
            assert!(
                check_envelope(&c, "c1", &AUD, NOW).is_err(),
                "without {claim}"
            );
        }
    }

    #[test]
    fn parameters_are_the_claims_beside_the_envelope() {
        let mut pairs = request_parameters(&good()).unwrap();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("requested_expiry".to_owned(), "120".to_owned()),
                ("scope".to_owned(), "openid".to_owned())
            ]
        );
        let mut c = good();
        c["binding_message"] = json!(["not", "a", "string"]);
        assert!(request_parameters(&c).is_err());
    }
}
