//! CIBA ping mode (CIBA Core §10.2, contract §5): POST `{"auth_req_id"}` to the client's
//! notification endpoint with `Authorization: Bearer <client_notification_token>`.
//! 2xx is delivered; 5xx, timeouts and connection errors are retried; any other answer
//! (4xx, and 3xx: redirects are never followed) is final, and so is an endpoint the target
//! policy refuses (not https, or an address on this network: see `target`).

use crate::target;
use ciba_runtime::ping_target::TargetPolicy;
use ciba_store::jobs::Failure;
use ciba_store::{auth_requests, clients, Store};
use serde_json::{json, Value};

/// What became of one delivery attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Worth another attempt later (5xx, timeout, connection error).
    Retry(String),
    /// Never retry (4xx, a redirect, or nothing left to notify).
    Final(String),
}

impl Delivery {
    pub fn failure(&self, retry_at: i64) -> Option<(Failure, &str)> {
        match self {
            Delivery::Delivered => None,
            Delivery::Retry(why) => Some((Failure::RetryAt(retry_at), why)),
            Delivery::Final(why) => Some((Failure::Final, why)),
        }
    }
}

/// The endpoint, the bearer token and the body of a ping job, from the database.
pub struct Notification {
    pub client_id: String,
    pub endpoint: String,
    pub token: String,
    pub body: Value,
}

/// Look up what to send for a ping job's payload. `Err` is a final failure (the request or
/// the client is gone, or the client is no longer a ping client); database errors are `Ok(Err)`
/// upstream (retried).
pub fn prepare(
    store: &Store,
    payload: &str,
) -> Result<Result<Notification, String>, ciba_store::StoreError> {
    let Some(id) = serde_json::from_str::<Value>(payload).ok().and_then(|v| {
        v.get("auth_req_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) else {
        return Ok(Err("malformed ping payload".into()));
    };
    store.read(|c| {
        let Some(request) = auth_requests::find(c, &id)? else {
            return Ok(Err("the request no longer exists".into()));
        };
        let Some(token) = request.client_notification_token else {
            return Ok(Err("the request has no client_notification_token".into()));
        };
        let endpoint = clients::find(c, &request.client_id)?
            .filter(|cl| cl.delivery_mode == "ping" && !cl.disabled)
            .and_then(|cl| cl.notification_endpoint);
        Ok(match endpoint {
            Some(endpoint) => Ok(Notification {
                client_id: request.client_id,
                endpoint,
                token,
                body: json!({ "auth_req_id": id }),
            }),
            None => Err("the client is not an enabled ping client".into()),
        })
    })
}

/// POST the notification, unless the policy refuses its endpoint. What this returns is
/// logged and kept as the job's last error: never the token.
pub async fn send(http: &reqwest::Client, policy: &TargetPolicy, n: &Notification) -> Delivery {
    if let Err(refused) = target::check_endpoint(policy, &n.endpoint) {
        return Delivery::Final(refused.to_string());
    }
    let res = http
        .post(&n.endpoint)
        .bearer_auth(&n.token)
        .json(&n.body)
        .send()
        .await;
    match res {
        Ok(resp) if resp.status().is_success() => Delivery::Delivered,
        Ok(resp) if resp.status().is_server_error() => {
            Delivery::Retry(format!("HTTP {}", resp.status().as_u16()))
        }
        Ok(resp) if resp.status().is_redirection() => Delivery::Final(format!(
            "HTTP {} (redirects are not followed)",
            resp.status().as_u16()
        )),
        Ok(resp) => Delivery::Final(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => match target::refusal(&e) {
            Some(refused) => Delivery::Final(refused.to_string()),
            None if e.is_timeout() => Delivery::Retry("timed out".into()),
            None if e.is_connect() => Delivery::Retry("could not connect".into()),
            None => Delivery::Retry("request failed".into()),
        },
    }
}
