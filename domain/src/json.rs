//! JSON from clients, parsed strictly: at most [`MAX_DEPTH`] levels of nesting (a deep
//! document costs stack and time before any check runs) and no object with a repeated key at
//! any depth (`{"amount":"1.00","amount":"9999.00"}` reads differently to different parsers,
//! and the user must see exactly what the digest covers).

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The deepest nesting of arrays and objects accepted from a client.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("is not valid JSON")]
    Syntax,
    #[error("nests arrays or objects deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("repeats the key {0:?} in one object")]
    DuplicateKey(String),
}

/// Parse a client's JSON document under the rules above.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { depth: 0 }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(value)
}

const TOO_DEEP: &str = "\u{0}too-deep";
const DUPLICATE: &str = "\u{0}duplicate:";

fn classify(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    if text.starts_with(TOO_DEEP) {
        JsonError::TooDeep
    } else if let Some(rest) = text.strip_prefix(DUPLICATE) {
        // serde_json appends " at line L column C" to custom errors.
        let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
        JsonError::DuplicateKey(key.chars().take(64).collect())
    } else {
        JsonError::Syntax
    }
}

struct Strict {
    depth: usize,
}

impl Strict {
    fn nested<E: serde::de::Error>(&self) -> Result<Strict, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(Strict {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.nested()?)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!("{DUPLICATE}{key}")));
            }
            let v = map.next_value_seed(self.nested()?)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ordinary_documents() {
        let v = parse(br#"{"a":[1,2.5,"x",null,true],"b":{"c":{}}}"#).unwrap();
        assert_eq!(v["a"][2], "x");
        assert_eq!(v["b"]["c"], Value::Object(Map::new()));
        assert_eq!(parse(b" 7 ").unwrap(), Value::from(7));
    }

    #[test]
    fn refuses_repeated_keys_at_any_depth() {
        assert_eq!(
            parse(br#"{"amount":"1.00","amount":"9999.00"}"#),
            Err(JsonError::DuplicateKey("amount".into()))
        );
        assert_eq!(
            parse(br#"{"payments":[{"amount":"1","currency":"NOK","amount":"2"}]}"#),
            Err(JsonError::DuplicateKey("amount".into()))
        );
        // The same key spelled with an escape is the same key.
        assert!(matches!(
            parse(br#"{"a":1,"\u0061":2}"#),
            Err(JsonError::DuplicateKey(_))
        ));
        // Equal keys in different objects are fine.
        assert!(parse(br#"{"x":{"a":1},"y":{"a":1}}"#).is_ok());
    }

    #[test]
    fn refuses_deep_nesting_and_trailing_garbage() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep));
        // Far deeper than serde_json's own recursion limit: still our clear answer.
        let very = "[".repeat(100_000);
        assert_eq!(parse(very.as_bytes()), Err(JsonError::TooDeep));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
        assert_eq!(parse(objects.as_bytes()), Err(JsonError::TooDeep));
        assert_eq!(parse(b"{} {}"), Err(JsonError::Syntax));
        assert_eq!(parse(b"{\"a\":}"), Err(JsonError::Syntax));
    }
}
