//! Signing keys: stored encrypted; published from creation until `expires_at`; sign from
//! `activates_at` until superseded.

use crate::error::StoreResult;
use crate::schema::signing_keys;
use crate::DbConnection;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKeyRow {
    pub kid: String,
    pub purpose: String,
    pub alg: String,
    pub public_jwk: String,
    pub private_key: String,
    pub kek_id: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
    pub expires_at: Option<i64>,
}

pub fn insert(conn: &mut DbConnection, row: &SigningKeyRow) -> StoreResult<()> {
    diesel::insert_into(signing_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Keys still published at `now` (not past `expires_at`), oldest first.
pub fn published(conn: &mut DbConnection, now: i64) -> StoreResult<Vec<SigningKeyRow>> {
    Ok(signing_keys::table
        .filter(
            signing_keys::expires_at
                .is_null()
                .or(signing_keys::expires_at.gt(now)),
        )
        .order((signing_keys::activates_at.asc(), signing_keys::kid.asc()))
        .select(SigningKeyRow::as_select())
        .load(conn)?)
}

pub fn all(conn: &mut DbConnection) -> StoreResult<Vec<SigningKeyRow>> {
    Ok(signing_keys::table
        .order((signing_keys::activates_at.asc(), signing_keys::kid.asc()))
        .select(SigningKeyRow::as_select())
        .load(conn)?)
}

/// Schedule the retirement of every key of (`purpose`, `alg`) that is not yet retiring,
/// except `keep`: it stops signing at `retires_at` and leaves the JWKS at `expires_at`.
pub fn schedule_retirement(
    conn: &mut DbConnection,
    purpose: &str,
    alg: &str,
    keep: &str,
    retires_at: i64,
    expires_at: i64,
) -> StoreResult<usize> {
    Ok(diesel::update(
        signing_keys::table
            .filter(signing_keys::purpose.eq(purpose))
            .filter(signing_keys::alg.eq(alg))
            .filter(signing_keys::kid.ne(keep))
            .filter(signing_keys::retires_at.is_null()),
    )
    .set((
        signing_keys::retires_at.eq(retires_at),
        signing_keys::expires_at.eq(expires_at),
    ))
    .execute(conn)?)
}

/// A key by id.
pub fn find(conn: &mut DbConnection, kid: &str) -> StoreResult<Option<SigningKeyRow>> {
    Ok(signing_keys::table
        .find(kid)
        .select(SigningKeyRow::as_select())
        .first(conn)
        .optional()?)
}

/// Revoke `kid` at `now`: it stops signing and leaves the JWKS at once. False when it was
/// not published (unknown, or gone already).
pub fn revoke(conn: &mut DbConnection, kid: &str, now: i64) -> StoreResult<bool> {
    let n = diesel::update(
        signing_keys::table
            .filter(signing_keys::kid.eq(kid))
            .filter(
                signing_keys::expires_at
                    .is_null()
                    .or(signing_keys::expires_at.gt(now)),
            ),
    )
    .set((
        signing_keys::retires_at.eq(now),
        signing_keys::expires_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Store `kid`'s private key sealed anew, under the key-encryption key `kek_id`.
pub fn reseal(
    conn: &mut DbConnection,
    kid: &str,
    private_key: &str,
    kek_id: &str,
) -> StoreResult<bool> {
    let n = diesel::update(signing_keys::table.find(kid))
        .set((
            signing_keys::private_key.eq(private_key),
            signing_keys::kek_id.eq(kek_id),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Delete keys that left the JWKS before `now` (nothing they signed is still valid).
pub fn purge_expired(conn: &mut DbConnection, now: i64) -> StoreResult<usize> {
    Ok(diesel::delete(
        signing_keys::table
            .filter(signing_keys::expires_at.is_not_null())
            .filter(signing_keys::expires_at.lt(now)),
    )
    .execute(conn)?)
}
