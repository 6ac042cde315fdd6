//! The claims of every token this server signs, built in one place. Pure: the issuer, times
//! and ids are parameters; signing is the caller's.

use crate::scope::{ScopeSet, PROFILE, SUB_BANKID, SUB_NNIN};
use serde_json::{json, Map, Value};

/// Who signs and when: the parts every token shares.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    pub issuer: &'a str,
    pub now: i64,
    /// A fresh random id (`jti`).
    pub jti: &'a str,
}

/// `client-at+jwt` from `client_credentials`: the client is the subject.
pub fn client_access_token(at: Issue<'_>, client_id: &str, scope: &str, ttl: i64) -> Value {
    user_access_token(at, client_id, client_id, scope, ttl)
}

/// `at+jwt` (RFC 9068) that comes with an ID token: the user is the subject. (The client's
/// own token has the same claims with the client as subject; its `typ` tells them apart.)
pub fn user_access_token(
    at: Issue<'_>,
    user_sub: &str,
    client_id: &str,
    scope: &str,
    ttl: i64,
) -> Value {
    json!({
        "iss": at.issuer, "sub": user_sub, "aud": at.issuer, "client_id": client_id,
        "scope": scope, "iat": at.now, "exp": at.now + ttl, "jti": at.jti,
    })
}

/// Bind an access token to the client certificate with thumbprint `x5t_s256` (RFC 8705 §3.1).
pub fn bind_to_certificate(claims: &mut Value, x5t_s256: Option<&str>) {
    if let Some(thumbprint) = x5t_s256 {
        claims["cnf"] = json!({ "x5t#S256": thumbprint });
    }
}

/// `permission+jwt`: the merchant's handle on a registered permission, until its `exp`.
pub fn permission_token(at: Issue<'_>, client_id: &str, permission_id: &str, exp: i64) -> Value {
    json!({
        "iss": at.issuer, "aud": at.issuer, "sub": client_id, "client_id": client_id,
        "permission_id": permission_id, "iat": at.now, "exp": exp, "jti": at.jti,
    })
}

/// The grant of a permission: who approved which statement (its digest), how strongly.
pub struct Grant<'a> {
    pub issuer: &'a str,
    pub permission_id: &'a str,
    pub digest: &'a str,
    pub user_sub: &'a str,
    pub acr: &'a str,
    /// RFC 8176 values, a JSON array.
    pub amr: &'a Value,
    /// When the user decided.
    pub decided_at: i64,
}

impl Grant<'_> {
    pub fn claims(&self) -> Value {
        json!({
            "iss": self.issuer, "permission_id": self.permission_id,
            "permission_digest": self.digest, "sub": self.user_sub, "acr": self.acr,
            "amr": self.amr, "iat": self.decided_at,
        })
    }
}

/// The user as an ID token may describe them.
pub struct User<'a> {
    pub sub: &'a str,
    pub nnin: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub birthdate: &'a str,
    pub updated_at: i64,
    pub bankid_pid: Option<&'a str>,
}

/// The ID token of a redeemed CIBA or App2App request.
pub struct IdToken<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub now: i64,
    pub ttl: i64,
    pub auth_time: i64,
    pub acr: &'a str,
    pub amr: Value,
    pub auth_req_id: &'a str,
    /// The permission the request was started from: (id, digest).
    pub permission: Option<(&'a str, &'a str)>,
    pub scopes: &'a ScopeSet,
    /// The client may receive the NNIN (`sub_nnin`), as registered.
    pub nnin_entitled: bool,
    pub user: User<'a>,
}

impl IdToken<'_> {
    /// OpenID Connect core claims, the CIBA `auth_req_id`, the permission it was for, and
    /// what the granted scopes allow: `profile` the name and birthdate, `sub_nnin` the NNIN
    /// (only for an entitled client), `sub_bankid` the BankID pid when known.
    pub fn claims(&self) -> Value {
        let u = &self.user;
        let mut c = Map::new();
        let mut put = |k: &str, v: Value| {
            c.insert(k.to_owned(), v);
        };
        put("iss", json!(self.issuer));
        put("aud", json!(self.client_id));
        put("azp", json!(self.client_id));
        put("sub", json!(u.sub));
        put("iat", json!(self.now));
        put("exp", json!(self.now + self.ttl));
        put("auth_time", json!(self.auth_time));
        put("acr", json!(self.acr));
        put("amr", self.amr.clone());
        put(
            "urn:openid:params:jwt:claim:auth_req_id",
            json!(self.auth_req_id),
        );
        if let Some((id, digest)) = self.permission {
            put("permission_id", json!(id));
            put("permission_digest", json!(digest));
        }
        if self.scopes.contains(PROFILE) {
            put("name", json!(format!("{} {}", u.given_name, u.family_name)));
            put("given_name", json!(u.given_name));
            put("family_name", json!(u.family_name));
            put("birthdate", json!(u.birthdate));
            put("updated_at", json!(u.updated_at));
        }
        if self.scopes.contains(SUB_NNIN) && self.nnin_entitled {
            put("sub_nnin", json!(u.nnin));
        }
        if self.scopes.contains(SUB_BANKID) {
            if let Some(pid) = u.bankid_pid {
                put("sub_bankid", json!(pid));
            }
        }
        Value::Object(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token<'a>(scopes: &'a ScopeSet, entitled: bool) -> IdToken<'a> {
        IdToken {
            issuer: "https://idp.example",
            client_id: "c1",
            now: 1_000,
            ttl: 300,
            auth_time: 990,
            acr: "urn:acr:high",
            amr: json!(["hwk", "face"]),
            auth_req_id: "req1",
            permission: Some(("p1", "digest")),
            scopes,
            nnin_entitled: entitled,
            user: User {
                sub: "u1",
                nnin: "01019010046",
                given_name: "Kari",
                family_name: "Nordmann",
                birthdate: "1990-01-01",
                updated_at: 5,
                bankid_pid: None,
            },
        }
    }

    #[test]
    fn id_tokens_say_only_what_the_scopes_allow() {
        let plain = ScopeSet::parse("openid").unwrap();
        let c = token(&plain, true).claims();
        assert_eq!(c["aud"], "c1");
        assert_eq!(c["exp"], 1_300);
        assert_eq!(c["urn:openid:params:jwt:claim:auth_req_id"], "req1");
        assert_eq!(c["permission_digest"], "digest");
        assert!(c.get("name").is_none() && c.get("sub_nnin").is_none());

        let wide = ScopeSet::parse("openid profile sub_nnin sub_bankid").unwrap();
        let c = token(&wide, true).claims();
        assert_eq!(c["name"], "Kari Nordmann");
        assert_eq!(c["sub_nnin"], "01019010046");
        assert!(c.get("sub_bankid").is_none(), "no pid known");
        let c = token(&wide, false).claims();
        assert!(c.get("sub_nnin").is_none(), "the client is not entitled");
    }

    #[test]
    fn access_tokens_name_their_subject() {
        let at = Issue {
            issuer: "https://idp.example",
            now: 10,
            jti: "j",
        };
        let client = client_access_token(at, "c1", "openid", 60);
        assert_eq!(
            (client["sub"].as_str(), client["exp"].as_i64()),
            (Some("c1"), Some(70))
        );
        let user = user_access_token(at, "u1", "c1", "openid", 60);
        assert_eq!(user["sub"], "u1");
        assert_eq!(user["client_id"], "c1");
        let p = permission_token(at, "c1", "p1", 99);
        assert_eq!(
            (p["permission_id"].as_str(), p["exp"].as_i64()),
            (Some("p1"), Some(99))
        );
    }
}
