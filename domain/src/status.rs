//! The states of authentication requests, permissions and devices: one definition each, in
//! the words the database and the API use.

macro_rules! states {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored in the database and shown by the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states! {
    /// An authentication request (App2App or CIBA): pending until the user decides or it
    /// expires; an approved one is redeemed once at the token endpoint.
    RequestStatus {
        Pending => "pending",
        Approved => "approved",
        Declined => "declined",
        Expired => "expired",
    }
}

states! {
    /// A registered permission: it follows the decision on the request started from it.
    PermissionStatus {
        Pending => "pending",
        Granted => "granted",
        Declined => "declined",
        Expired => "expired",
    }
}

states! {
    /// An enrolled device: active until revoked.
    DeviceStatus {
        Active => "active",
        Revoked => "revoked",
    }
}

impl RequestStatus {
    /// A stored status read at `now`: pending at or past its expiry is expired, whether or
    /// not the worker has marked it. An unknown word reads as expired (never as pending).
    pub fn at(stored: &str, expires_at: i64, now: i64) -> Self {
        read_at(
            Self::parse(stored),
            Self::Pending,
            Self::Expired,
            now >= expires_at,
        )
    }

    /// What the permission a request was started from becomes when the request ends so.
    pub fn permission_status(self) -> PermissionStatus {
        match self {
            Self::Pending => PermissionStatus::Pending,
            Self::Approved => PermissionStatus::Granted,
            Self::Declined => PermissionStatus::Declined,
            Self::Expired => PermissionStatus::Expired,
        }
    }
}

impl PermissionStatus {
    /// A stored status read at `now` against the permission's `exp`.
    pub fn at(stored: &str, exp: i64, now: i64) -> Self {
        read_at(
            Self::parse(stored),
            Self::Pending,
            Self::Expired,
            now >= exp,
        )
    }
}

/// Pending past its end reads as expired; an unknown word reads as expired (never pending).
fn read_at<S: Copy + PartialEq>(parsed: Option<S>, pending: S, expired: S, past_end: bool) -> S {
    match parsed {
        Some(s) if s == pending && past_end => expired,
        Some(s) => s,
        None => expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(*s));
        }
        for s in PermissionStatus::ALL {
            assert_eq!(PermissionStatus::parse(s.as_str()), Some(*s));
        }
        for s in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(RequestStatus::parse("Pending"), None);
    }

    #[test]
    fn pending_reads_as_expired_from_its_expiry_on() {
        assert_eq!(
            RequestStatus::at("pending", 100, 99),
            RequestStatus::Pending
        );
        assert_eq!(
            RequestStatus::at("pending", 100, 100),
            RequestStatus::Expired
        );
        assert_eq!(
            RequestStatus::at("approved", 100, 500),
            RequestStatus::Approved
        );
        assert_eq!(RequestStatus::at("bogus", 100, 0), RequestStatus::Expired);
        assert_eq!(
            PermissionStatus::at("pending", 100, 100),
            PermissionStatus::Expired
        );
    }

    #[test]
    fn a_request_carries_its_end_to_the_permission() {
        assert_eq!(
            RequestStatus::Approved.permission_status(),
            PermissionStatus::Granted
        );
        assert_eq!(
            RequestStatus::Declined.permission_status(),
            PermissionStatus::Declined
        );
        assert_eq!(
            RequestStatus::Expired.permission_status(),
            PermissionStatus::Expired
        );
    }
}
