//! One HTTP answer as the tests read it: status, headers and JSON body, with assertions that
//! print the body when they fail.

use reqwest::header::HeaderMap;
use serde_json::Value;
use std::fmt;

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body, or `Value::Null` when there is none (or it is not JSON).
    pub body: Value,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The body's `error`, or "" when it has none.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 200; the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        self.expect(200)
    }

    /// Asserts `status`; the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self}");
        &self.body
    }

    /// Asserts `status` and the body's `error` together.
    #[track_caller]
    pub fn expect_error(&self, status: u16, error: &str) {
        assert_eq!((self.status, self.error()), (status, error), "{self}");
    }

    /// The body's `field`, which must be a string.
    #[track_caller]
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field}: {self}"))
    }
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;

    fn index(&self, field: &str) -> &Value {
        &self.body[field]
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}
