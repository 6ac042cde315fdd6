//! Assurance claims backed by what the server knows (contract §3, §5, §7): `acr` is a level
//! the user's devices can reach, and `amr` never claims more than the device was enrolled
//! with. eIDAS high needs a hardware-bound key (`hwk`) and a biometric or PIN check.

use crate::error::OAuthError;
use crate::permission::{Loa, ACR_HIGH, ACR_SUBSTANTIAL};

/// What a device's key is, as the app declared at enrollment (RFC 8176 values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProtection {
    /// Hardware-bound (secure enclave, StrongBox).
    Hardware,
    /// A software key.
    Software,
}

impl KeyProtection {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hwk" => Some(Self::Hardware),
            "swk" => Some(Self::Software),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hardware => "hwk",
            Self::Software => "swk",
        }
    }
}

/// RFC 8176 values that show the user was verified on the device.
const USER_VERIFICATION: &[&str] = &["bio", "face", "fpt", "iris", "pin"];

/// Can a device with this key reach `acr`?
pub fn reachable(acr: &str, key: KeyProtection) -> bool {
    acr != ACR_HIGH || key == KeyProtection::Hardware
}

/// The `acr` of a request: the permission's level, or the first of the requested
/// `acr_values` (in the client's order of preference) that is at least that level and that
/// one of the user's devices can reach. Refused up front when none can, naming the acr.
pub fn request_acr(
    loa: Loa,
    acr_values: &[&str],
    devices: &[KeyProtection],
) -> Result<&'static str, OAuthError> {
    let floor = loa.acr();
    let wanted: Vec<&'static str> = if acr_values.is_empty() {
        vec![floor]
    } else {
        let known: Vec<&'static str> = acr_values
            .iter()
            .filter_map(|a| [ACR_SUBSTANTIAL, ACR_HIGH].into_iter().find(|k| k == a))
            .collect();
        if known.is_empty() {
            return Err(OAuthError::invalid_request(format!(
                "acr_values: none is supported (supported: {ACR_SUBSTANTIAL} {ACR_HIGH})"
            )));
        }
        // A request for less than the permission's level is held to the permission's level.
        known
            .into_iter()
            .filter(|a| floor != ACR_HIGH || *a == ACR_HIGH)
            .collect()
    };
    wanted
        .iter()
        .copied()
        .find(|acr| devices.iter().any(|k| reachable(acr, *k)))
        .ok_or_else(|| {
            OAuthError::invalid_request(format!(
                "no enrolled device of the user can reach acr {}",
                wanted.first().copied().unwrap_or(floor)
            ))
        })
}

/// A decision's `amr` (RFC 8176) against the device that signed it and the request's `acr`.
/// `None` (the app said nothing) becomes what the server knows: the device's key protection.
pub fn decision_amr(
    reported: Option<Vec<String>>,
    key: KeyProtection,
    acr: &str,
) -> Result<Vec<String>, OAuthError> {
    let amr = reported.unwrap_or_else(|| vec![key.as_str().to_owned()]);
    let has = |v: &str| amr.iter().any(|a| a == v);
    if has("hwk") && key != KeyProtection::Hardware {
        return Err(OAuthError::invalid_request(
            "amr claims hwk, but this device was enrolled with a software key",
        ));
    }
    if acr == ACR_HIGH {
        let verified = amr.iter().any(|a| USER_VERIFICATION.contains(&a.as_str()));
        if key != KeyProtection::Hardware || !has("hwk") || !verified {
            return Err(OAuthError::invalid_request(
                "this request needs eIDAS high: a hardware-bound key (hwk) and bio or pin in amr",
            ));
        }
    }
    Ok(amr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyProtection::{Hardware, Software};

    #[test]
    fn acr_follows_the_permission_and_the_devices() {
        assert_eq!(
            request_acr(Loa::Substantial, &[], &[Software]),
            Ok(ACR_SUBSTANTIAL)
        );
        assert_eq!(request_acr(Loa::High, &[], &[Hardware]), Ok(ACR_HIGH));
        let e = request_acr(Loa::High, &[], &[Software]).unwrap_err();
        assert!(e.description.contains(ACR_HIGH));
        // Preference order, limited to what the devices reach.
        assert_eq!(
            request_acr(Loa::Substantial, &[ACR_HIGH, ACR_SUBSTANTIAL], &[Software]),
            Ok(ACR_SUBSTANTIAL)
        );
        assert_eq!(
            request_acr(
                Loa::Substantial,
                &[ACR_HIGH, ACR_SUBSTANTIAL],
                &[Software, Hardware]
            ),
            Ok(ACR_HIGH)
        );
        assert!(request_acr(Loa::Substantial, &[ACR_HIGH], &[Software]).is_err());
        // Asking for less than the permission's level does not lower it.
        assert!(request_acr(Loa::High, &[ACR_SUBSTANTIAL], &[Hardware]).is_err());
        assert!(request_acr(Loa::Substantial, &["urn:unknown"], &[Hardware]).is_err());
        assert!(request_acr(Loa::Substantial, &[], &[]).is_err());
    }

    #[test]
    fn amr_never_claims_more_than_the_device() {
        let v = |a: &[&str]| Some(a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert!(decision_amr(v(&["hwk", "bio"]), Software, ACR_SUBSTANTIAL).is_err());
        assert_eq!(
            decision_amr(v(&["swk", "pin"]), Software, ACR_SUBSTANTIAL).unwrap(),
            vec!["swk", "pin"]
        );
        assert_eq!(
            decision_amr(None, Hardware, ACR_SUBSTANTIAL).unwrap(),
            vec!["hwk"]
        );
        assert!(decision_amr(v(&["hwk", "face"]), Hardware, ACR_HIGH).is_ok());
        assert!(decision_amr(v(&["hwk", "pin"]), Hardware, ACR_HIGH).is_ok());
        assert!(decision_amr(v(&["hwk"]), Hardware, ACR_HIGH).is_err());
        assert!(decision_amr(v(&["bio"]), Hardware, ACR_HIGH).is_err());
        assert!(decision_amr(v(&["swk", "bio"]), Software, ACR_HIGH).is_err());
        assert!(decision_amr(None, Hardware, ACR_HIGH).is_err());
    }
}
