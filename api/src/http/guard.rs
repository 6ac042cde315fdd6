//! Typed authentication filters: a route that needs a merchant or a device says so in the
//! route table, and its handler receives who it is. A refusal is a [`Refused`] rejection that
//! [`render_refused`] turns back into the route's own answer, so metrics and the log still
//! count it under the route.

use crate::auth::device::{authenticate_device, AuthenticatedDevice};
use crate::auth::{self, AuthRequest, Authenticated, Endpoint};
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
    caller().and_then(move |caller: Caller| {
        let state = state.clone();
        async move {
            let endpoint = state.config.endpoint(path);
            let req = AuthRequest::of(&caller, None, &endpoint, Endpoint::Api);
            let client = auth::authenticate(&state, req, now()).await.map_err(refuse)?;
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
                let dev = authenticate_device(&state, auth, now()).await.map_err(refuse)?;
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
