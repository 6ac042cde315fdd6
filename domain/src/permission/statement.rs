//! The statements a user approves, one schema per permission type. Unknown members are
//! rejected: what the user is shown is exactly what the merchant registered.

use super::amount::is_valid_amount;
use super::currency::is_iso4217;
use super::PermissionType;
use crate::error::OAuthError;
use serde_json::{Map, Value};

pub const MAX_PAYMENTS: usize = 100;
pub const MAX_TEXT_CHARS: usize = 4096;
const MAX_REF_CHARS: usize = 256;
const MAX_CREDITOR_CHARS: usize = 140;

fn bad(field: &str, problem: &str) -> OAuthError {
    OAuthError::invalid_request(format!("permission.{field}: {problem}"))
}

fn only_members(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), OAuthError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            &format!("{path}{k}"),
            "is not a member of this statement type",
        )),
        None => Ok(()),
    }
}

fn string<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    path: &str,
    max_chars: usize,
) -> Result<&'a str, OAuthError> {
    let name = format!("{path}{field}");
    let s = obj
        .get(field)
        .ok_or_else(|| bad(&name, "is required"))?
        .as_str()
        .ok_or_else(|| bad(&name, "must be a string"))?;
    if s.trim().is_empty() {
        return Err(bad(&name, "must not be empty"));
    }
    if s.chars().count() > max_chars {
        return Err(bad(
            &name,
            &format!("must be at most {max_chars} characters"),
        ));
    }
    // Only a text.v1 text may run over several lines.
    let allowed: &[char] = if field == "text" { &['\n'] } else { &[] };
    if let Some(hidden) = crate::text::first_hidden(s, allowed) {
        return Err(bad(&name, &format!("must not contain {hidden}")));
    }
    Ok(s)
}

/// Validate a decoded statement for `kind`; returns its nonce.
pub fn validate(kind: PermissionType, statement: &Value) -> Result<String, OAuthError> {
    let obj = statement
        .as_object()
        .ok_or_else(|| OAuthError::invalid_request("permission: must encode a JSON object"))?;
    let nonce = string(obj, "nonce", "", MAX_REF_CHARS)?.to_owned();
    match kind {
        PermissionType::Authentication => only_members(obj, &["nonce"], "")?,
        PermissionType::Text => {
            only_members(obj, &["nonce", "id", "text"], "")?;
            string(obj, "id", "", MAX_REF_CHARS)?;
            string(obj, "text", "", MAX_TEXT_CHARS)?;
        }
        PermissionType::Payment => {
            only_members(obj, &["nonce", "id", "payments"], "")?;
            string(obj, "id", "", MAX_REF_CHARS)?;
            let payments = obj
                .get("payments")
                .ok_or_else(|| bad("payments", "is required"))?
                .as_array()
                .ok_or_else(|| bad("payments", "must be an array"))?;
            if payments.is_empty() || payments.len() > MAX_PAYMENTS {
                return Err(bad(
                    "payments",
                    &format!("must hold 1 to {MAX_PAYMENTS} payments"),
                ));
            }
            for (i, p) in payments.iter().enumerate() {
                let path = format!("payments[{i}].");
                let p = p
                    .as_object()
                    .ok_or_else(|| bad(&format!("payments[{i}]"), "must be an object"))?;
                only_members(
                    p,
                    &["paymentId", "amount", "currency", "creditorName"],
                    &path,
                )?;
                string(p, "paymentId", &path, MAX_REF_CHARS)?;
                let amount = string(p, "amount", &path, 32)?;
                if !is_valid_amount(amount) {
                    return Err(bad(
                        &format!("{path}amount"),
                        "must be a positive decimal string with a dot and at most 2 decimals",
                    ));
                }
                let currency = string(p, "currency", &path, 3)?;
                if !is_iso4217(currency) {
                    return Err(bad(
                        &format!("{path}currency"),
                        "must be an ISO 4217 alpha-3 currency code",
                    ));
                }
                string(p, "creditorName", &path, MAX_CREDITOR_CHARS)?;
            }
        }
    }
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payment(p: Value) -> Value {
        json!({"nonce": "n", "id": "basket", "payments": [p]})
    }

    fn ok_payment() -> Value {
        json!({"paymentId": "p1", "amount": "123.45", "currency": "NOK", "creditorName": "Scrooge McDuck"})
    }

    #[test]
    fn accepts_each_type() {
        assert_eq!(
            validate(PermissionType::Payment, &payment(ok_payment())).unwrap(),
            "n"
        );
        assert!(validate(
            PermissionType::Text,
            &json!({"nonce": "n", "id": "i", "text": "Sign this\nplease"})
        )
        .is_ok());
        assert!(validate(PermissionType::Authentication, &json!({"nonce": "n"})).is_ok());
    }

    #[test]
    fn rejects_bad_payments_naming_the_field() {
        let cases = [
            ("amount", json!("0")),
            ("amount", json!("12,50")),
            ("amount", json!(12.5)),
            ("currency", json!("NOKK")),
            ("currency", json!("XXX")),
            ("creditorName", json!("")),
            ("paymentId", json!(null)),
        ];
        for (field, value) in cases {
            let mut p = ok_payment();
            p[field] = value;
            let e = validate(PermissionType::Payment, &payment(p)).unwrap_err();
            assert!(
                e.description.contains(&format!("payments[0].{field}")),
                "{field}: {}",
                e.description
            );
        }
        let mut p = ok_payment();
        p["extra"] = json!(1);
        assert!(validate(PermissionType::Payment, &payment(p))
            .unwrap_err()
            .description
            .contains("extra"));
    }

    #[test]
    fn enforces_payment_count() {
        let none = json!({"nonce": "n", "id": "b", "payments": []});
        assert!(validate(PermissionType::Payment, &none).is_err());
        let many: Vec<Value> = (0..=MAX_PAYMENTS).map(|_| ok_payment()).collect();
        assert!(validate(
            PermissionType::Payment,
            &json!({"nonce": "n", "id": "b", "payments": many.clone()})
        )
        .is_err());
        let max = &many[..MAX_PAYMENTS];
        assert!(validate(
            PermissionType::Payment,
            &json!({"nonce": "n", "id": "b", "payments": max})
        )
        .is_ok());
    }

    #[test]
    fn enforces_text_length_and_nonce() {
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(validate(
            PermissionType::Text,
            &json!({"nonce": "n", "id": "i", "text": long})
        )
        .is_err());
        let max = "ø".repeat(MAX_TEXT_CHARS);
        assert!(validate(
            PermissionType::Text,
            &json!({"nonce": "n", "id": "i", "text": max})
        )
        .is_ok());
        assert!(validate(PermissionType::Authentication, &json!({}))
            .unwrap_err()
            .description
            .contains("nonce"));
        assert!(validate(PermissionType::Authentication, &json!({"nonce": ""})).is_err());
        assert!(validate(PermissionType::Authentication, &json!([1])).is_err());
    }
}
