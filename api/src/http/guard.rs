//! Typed authentication filters: a route that needs a merchant or a device says so in the
//! route table, and its handler receives who it is. A refusal is a [`Refused`] rejection that
//! [`render_refused`] turns back into the route's own answer, so metrics and the log still
//! count it under the route.

use crate::auth::device::{authenticate_device, AuthenticatedDevice};
use crate::auth::{self, Authenticated, Endpoint, OfferedCredentials};
use crate::error::{private_reply, ApiError};
use crate::http::caller::{caller, Caller};
use crate::state::{now, AppState};
use ciba_domain::scope::PERMISSIONS_CLIENT;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Authentication refused: the answer the route gives.
#[derive(Debug)]
pub struct Refused(pub ApiError);
impl warp::reject::Reject for Refused {}

fn refuse(e: ApiError) -> Rejection {
    warp::reject::custom(Refused(e))
}

/// A merchant's backend with a `permissions/client` access token (contract §4).
pub fn merchant(
    state: AppState,
    path: &'static str,
) -> impl Filter<Extract = (Caller, Authenticated), Error = Rejection> + Clone {
    caller()
        .and_then(move |caller: Caller| {
            let state = state.clone();
            async move {
                let endpoint = state.config.endpoint(path);
                let req = OfferedCredentials::of(&caller, None, &endpoint, Endpoint::Api);
                let client = auth::authenticate(&state, req, now())
                    .await
                    .map_err(refuse)?;
                client.require_scope(PERMISSIONS_CLIENT).map_err(refuse)?;
                Ok::<_, Rejection>((caller, client))
            }
        })
        .untuple_one()
}

/// An enrolled authenticating app with its device JWT (contract §7).
pub fn device(
    state: AppState,
) -> impl Filter<Extract = (Caller, AuthenticatedDevice), Error = Rejection> + Clone {
    caller()
        .and_then(move |caller: Caller| {
            let state = state.clone();
            async move {
                let auth = caller.authorization.as_deref();
                let dev = authenticate_device(&state, auth, now())
                    .await
                    .map_err(refuse)?;
                Ok::<_, Rejection>((caller, dev))
            }
        })
        .untuple_one()
}

/// The route's answer to a [`Refused`] rejection; any other rejection passes on.
pub async fn render_refused(r: Rejection) -> Result<(Response,), Rejection> {
    match r.find::<Refused>() {
        Some(Refused(e)) => Ok((private_reply(Err(e.clone())),)),
        None => Err(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_store::testing::TestDatabase;
    use ciba_store::Backend;

    fn state(db: &TestDatabase) -> AppState {
        crate::state::test_state(db, &[])
    }

    fn refusal(r: Rejection) -> ApiError {
        r.find::<Refused>()
            .map(|r| r.0.clone())
            .expect("a Refused rejection")
    }

    #[tokio::test]
    async fn a_merchant_route_without_a_token_is_refused_by_its_filter() {
        let db = TestDatabase::create(Backend::Sqlite);
        let filter = merchant(state(&db), "/permissions/v1/");
        let r = warp::test::request().path("/").filter(&filter).await;
        let e = refusal(r.expect_err("refused"));
        assert_eq!(e.error.code.as_str(), "invalid_client");
        assert_eq!(e.error.status(), 401);

        let forged = warp::test::request()
            .header("authorization", "Bearer eyJhbGciOiJub25lIn0.e30.")
            .filter(&filter)
            .await;
        assert_eq!(refusal(forged.err().unwrap()).error.status(), 401);
    }

    #[tokio::test]
    async fn a_device_route_without_a_device_jwt_is_refused_by_its_filter() {
        let db = TestDatabase::create(Backend::Sqlite);
        let filter = device(state(&db));
        let r = warp::test::request().filter(&filter).await;
        assert_eq!(
            refusal(r.err().unwrap()).error.code.as_str(),
            "invalid_token"
        );
        let hs = "eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.c2ln";
        let r = warp::test::request()
            .header("authorization", format!("Bearer {hs}"))
            .filter(&filter)
            .await;
        assert_eq!(refusal(r.err().unwrap()).error.status(), 401);
    }

    #[tokio::test]
    async fn a_refusal_is_answered_and_counted_by_its_own_route() {
        let db = TestDatabase::create(Backend::Sqlite);
        let st = state(&db);
        let routes = crate::http::routes::routes(st.clone(), false);
        let resp = warp::test::request()
            .method("GET")
            .path("/permissions/v1/abc/grant")
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"], "invalid_client");
        let metrics = st.metrics.render();
        assert!(
            metrics.contains(r#"route="GET /permissions/v1/{id}/grant""#)
                && metrics.contains(r#"status="401""#),
            "{metrics}"
        );
        // A path no route knows is still 404, not a refusal of some route's filter.
        let resp = warp::test::request()
            .path("/permissions/v1/abc/nothing")
            .reply(&routes)
            .await;
        assert_eq!(resp.status(), 404);
    }
}
