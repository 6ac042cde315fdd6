//! OAuth scopes: parsing (RFC 6749 §3.3) and the scopes this server knows.

use crate::error::OAuthError;
use std::fmt;

pub const OPENID: &str = "openid";
pub const PROFILE: &str = "profile";
pub const SUB_NNIN: &str = "sub_nnin";
pub const SUB_BANKID: &str = "sub_bankid";
pub const PERMISSIONS_CLIENT: &str = "permissions/client";
pub const PERMISSIONS_APP2APP: &str = "permissions/app2app";
pub const PERMISSIONS_CIBA: &str = "permissions/ciba";
pub const PERMISSIONS_TEXT: &str = "permissions/text";

/// Scopes a client may be granted with `client_credentials` (API access).
pub const CLIENT_SCOPES: &[&str] = &[
    PERMISSIONS_CLIENT,
    PERMISSIONS_APP2APP,
    PERMISSIONS_CIBA,
    PERMISSIONS_TEXT,
    OPENID,
];

/// Scopes that select ID-token claims in an authentication request.
pub const ID_TOKEN_SCOPES: &[&str] = &[OPENID, PROFILE, SUB_NNIN, SUB_BANKID];

/// Every scope this server advertises.
pub fn all_supported() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = ID_TOKEN_SCOPES.to_vec();
    all.extend(CLIENT_SCOPES.iter().filter(|s| **s != OPENID));
    all
}

/// An ordered set of scope tokens without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// Parse a space-separated scope string. Empty input gives an empty set.
    pub fn parse(text: &str) -> Result<Self, OAuthError> {
        let mut out: Vec<String> = Vec::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            if !token.bytes().all(is_scope_char) {
                return Err(OAuthError::invalid_scope(
                    "scope contains a character not allowed by RFC 6749",
                ));
            }
            if token.len() > 100 {
                return Err(OAuthError::invalid_scope("a scope token is too long"));
            }
            if !out.iter().any(|t| t == token) {
                out.push(token.to_owned());
            }
        }
        if out.len() > 32 {
            return Err(OAuthError::invalid_scope("too many scopes"));
        }
        Ok(Self(out))
    }

    pub fn from_known(items: &[&str]) -> Self {
        Self(items.iter().map(|s| (*s).to_owned()).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The first member not in `allowed`, if any.
    pub fn first_outside(&self, allowed: &ScopeSet) -> Option<&str> {
        self.iter().find(|s| !allowed.contains(s))
    }

    /// Members that are also in `other`, in this set's order.
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        Self(
            self.0
                .iter()
                .filter(|s| other.contains(s))
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dedupes_and_keeps_order() {
        let s = ScopeSet::parse("openid  profile openid").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(s.contains("profile"));
        assert!(!s.contains("sub_nnin"));
    }

    #[test]
    fn rejects_bad_characters() {
        assert!(ScopeSet::parse("open\"id").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
    }

    #[test]
    fn finds_scope_outside_allowed_set() {
        let allowed = ScopeSet::parse("permissions/client openid").unwrap();
        let asked = ScopeSet::parse("openid permissions/app2app").unwrap();
        assert_eq!(asked.first_outside(&allowed), Some("permissions/app2app"));
        assert_eq!(asked.intersect(&allowed).to_string(), "openid");
    }
}
