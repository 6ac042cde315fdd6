//! Property tests (proptest) of the api's decoders of network input: form bodies, JSON
//! bodies and Basic credentials (`form`), and the JWTs only the api reads, signed decisions,
//! signed authentication requests and the unverified issuer peek (`app_jwts`). The
//! decoders of the domain and of JWT verification have theirs in `domain/tests` and
//! `runtime/tests`. Bounded for CI: [`CASES`] cases per property.

mod app_jwts;
mod form;

/// Cases per property.
pub const CASES: u32 = 256;
