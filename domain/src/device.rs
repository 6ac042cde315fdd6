//! Device information (`{"p","ma","mo"}`) and device matching for App2App.

use crate::error::{ErrorCode, OAuthError};
use crate::permission::decode_b64url;
use serde_json::Value;

/// The only platform App2App universal links work on.
pub const APP2APP_PLATFORM: &str = "ios";
const MAX_FIELD: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub platform: String,
    pub manufacturer: String,
    pub model: String,
}

impl DeviceInfo {
    /// From a JSON object `{"p","ma","mo"}` (`field` names it in errors).
    pub fn from_json(field: &str, v: &Value) -> Result<Self, OAuthError> {
        let obj = v.as_object().ok_or_else(|| {
            OAuthError::invalid_request(format!("{field}: must be a JSON object"))
        })?;
        let get = |k: &str| -> Result<String, OAuthError> {
            let s = obj
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| OAuthError::invalid_request(format!("{field}.{k}: is required")))?;
            if s.is_empty() || s.len() > MAX_FIELD || s.chars().any(char::is_control) {
                return Err(OAuthError::invalid_request(format!(
                    "{field}.{k}: must be 1 to {MAX_FIELD} printable characters"
                )));
            }
            Ok(s.to_owned())
        };
        Ok(Self {
            platform: get("p")?,
            manufacturer: get("ma")?,
            model: get("mo")?,
        })
    }

    /// From the base64url JSON of the `device_info` form field.
    pub fn from_b64url(field: &str, text: &str) -> Result<Self, OAuthError> {
        let bytes = decode_b64url(field, text)?;
        let v: Value = crate::json::parse(&bytes).map_err(|e| match e {
            crate::json::JsonError::Syntax => {
                OAuthError::invalid_request(format!("{field}: must encode JSON"))
            }
            other => OAuthError::invalid_request(format!("{field}: the JSON {other}")),
        })?;
        Self::from_json(field, &v)
    }

    /// Exactly the same platform, manufacturer and model (case-sensitive: these are
    /// machine identifiers such as `iPhone11,2`).
    pub fn matches(&self, other: &DeviceInfo) -> bool {
        self.platform == other.platform
            && self.manufacturer == other.manufacturer
            && self.model == other.model
    }
}

/// The ids of `enrolled` devices that match `presented` for App2App.
/// Errors with `device_mismatch` when none does (or the platform is not iOS).
pub fn match_for_app2app<'a>(
    presented: &DeviceInfo,
    enrolled: impl IntoIterator<Item = (&'a str, DeviceInfo)>,
) -> Result<Vec<String>, OAuthError> {
    if presented.platform != APP2APP_PLATFORM {
        return Err(OAuthError::new(
            ErrorCode::DeviceMismatch,
            "app2app is supported on ios only",
        ));
    }
    let ids: Vec<String> = enrolled
        .into_iter()
        .filter(|(_, d)| d.matches(presented))
        .map(|(id, _)| id.to_owned())
        .collect();
    if ids.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::DeviceMismatch,
            "no enrolled device of the user matches device_info",
        ));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(p: &str, ma: &str, mo: &str) -> DeviceInfo {
        DeviceInfo {
            platform: p.into(),
            manufacturer: ma.into(),
            model: mo.into(),
        }
    }

    #[test]
    fn parses_the_reference_example() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"p":"ios","ma":"Apple","mo":"iPhone11,2"}"#);
        assert_eq!(
            DeviceInfo::from_b64url("device_info", &b64).unwrap(),
            info("ios", "Apple", "iPhone11,2")
        );
        assert!(DeviceInfo::from_b64url("device_info", "***").is_err());
        assert!(
            DeviceInfo::from_json("d", &json!({"p": "ios", "ma": "Apple"}))
                .unwrap_err()
                .description
                .contains("d.mo")
        );
        assert!(DeviceInfo::from_json("d", &json!({"p": "ios", "ma": "", "mo": "x"})).is_err());
    }

    #[test]
    fn matching_needs_all_three_and_ios() {
        let enrolled = vec![
            ("d1", info("ios", "Apple", "iPhone11,2")),
            ("d2", info("ios", "Apple", "iPhone12,3")),
        ];
        assert_eq!(
            match_for_app2app(&info("ios", "Apple", "iPhone11,2"), enrolled.clone()).unwrap(),
            vec!["d1"]
        );
        for presented in [
            info("ios", "Apple", "iPhone11,3"),
            info("ios", "apple", "iPhone11,2"),
            info("android", "Apple", "iPhone11,2"),
        ] {
            let e = match_for_app2app(&presented, enrolled.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::DeviceMismatch);
        }
        let android = vec![("d3", info("android", "Samsung", "SM-G991B"))];
        assert!(
            match_for_app2app(&info("android", "Samsung", "SM-G991B"), android).is_err(),
            "android never matches"
        );
    }
}
