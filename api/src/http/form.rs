//! Request bodies. `application/x-www-form-urlencoded` (RFC 6749 §3.1 and appendix B):
//! repeated parameters are an error; parameters without a value count as omitted. JSON:
//! the content type is required and the body must parse.

use ciba_domain::error::OAuthError;

/// A JSON request body.
pub fn json_body(content_type: Option<&str>, body: &[u8]) -> Result<serde_json::Value, OAuthError> {
    if !is_content_type(content_type, "application/json") {
        return Err(OAuthError::invalid_request(
            "Content-Type must be application/json",
        ));
    }
    ciba_domain::json::parse(body).map_err(|e| OAuthError::invalid_request(format!("the body {e}")))
}

#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

pub fn is_content_type(header: Option<&str>, expected: &str) -> bool {
    header
        .and_then(|h| h.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(expected))
}

impl Form {
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, OAuthError> {
        if !is_content_type(content_type, "application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::invalid_request("request body is not UTF-8"));
        }
        let pairs = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self(pairs))
    }

    /// A form made of parameters that came another way (the claims of a signed request).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The names of the parameters that have a value.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.as_str())
    }

    /// The value of `name`, or `None` when absent or empty. Repeated: `invalid_request`.
    pub fn get(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == name && !v.is_empty() {
                if found.is_some() {
                    return Err(OAuthError::invalid_request(format!(
                        "parameter {name} is repeated"
                    )));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: Option<&str> = Some("application/x-www-form-urlencoded; charset=UTF-8");

    #[test]
    fn parses_and_rejects_repeats() {
        let f = Form::parse(CT, b"a=1&b=x%20y&c=&a=").unwrap();
        assert_eq!(f.get("a").unwrap(), Some("1"));
        assert_eq!(f.get("b").unwrap(), Some("x y"));
        assert_eq!(f.get("c").unwrap(), None);
        assert!(f.require("c").is_err());
        let f = Form::parse(CT, b"a=1&a=2").unwrap();
        assert!(f.get("a").is_err());
    }

    #[test]
    fn requires_the_content_type_and_utf8() {
        assert!(Form::parse(Some("application/json"), b"a=1").is_err());
        assert!(Form::parse(None, b"a=1").is_err());
        assert!(Form::parse(CT, &[0xff, 0xfe]).is_err());
    }
}
