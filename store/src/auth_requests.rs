//! Authentication requests (App2App and CIBA) started from a permission or a login hint.

use crate::error::StoreResult;
use crate::schema::auth_requests;
use crate::DbConnection;
use diesel::prelude::*;

/// The authentication methods recorded when the request was decided (a JSON array).
pub fn amr_of(conn: &mut DbConnection, auth_req_id: &str) -> StoreResult<Option<String>> {
    Ok(auth_requests::table
        .filter(auth_requests::id.eq(auth_req_id))
        .select(auth_requests::amr)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}
