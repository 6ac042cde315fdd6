//! Tuple forms of four helpers, kept only for the s09 worker specs until they read
//! [`Reply`] too (`post`, `get`, `backchannel_authorize` and `approve`/`decline` are the
//! forms the rest of the suite uses). Delete this file with their last use.

use super::app::{App, Merchant};
use super::{Reply, TestServer};
use reqwest::header::HeaderMap;
use serde_json::Value;

fn pair(r: Reply) -> (u16, Value) {
    (r.status, r.body)
}

impl TestServer {
    pub async fn post_form(
        &self,
        path: &str,
        auth: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, HeaderMap, Value) {
        let r = self.post(path, auth, form).await;
        (r.status, r.headers, r.body)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        pair(self.get(path).await)
    }
}

impl Merchant {
    pub async fn bc_authorize(&self, srv: &TestServer, fields: &[(&str, &str)]) -> (u16, Value) {
        pair(self.backchannel_authorize(srv, fields).await)
    }
}

impl App {
    pub async fn decide(&self, srv: &TestServer, link_ref: &str, decision: &str) -> (u16, Value) {
        pair(self.answer(srv, link_ref, decision).await)
    }
}
