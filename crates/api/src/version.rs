//! API version negotiation as the daemon does it: a path may start with `/vX.YZ`; versions
//! below [`MIN_API_VERSION`] or above [`API_VERSION`] get a 400 naming the supported range;
//! a path without a prefix means the current version.

use crate::error::ApiError;

/// The API version forge speaks (docker 24's), sent in `Api-Version` and by `/version`.
pub const API_VERSION: &str = "1.43";
/// The oldest version a client may ask for (the daemon's own minimum).
pub const MIN_API_VERSION: &str = "1.24";

/// A `major.minor` API version, compared numerically (`1.9 < 1.10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(u32, u32);

impl Version {
    fn parse(text: &str) -> Option<Version> {
        let (major, minor) = text.split_once('.')?;
        Some(Version(major.parse().ok()?, minor.parse().ok()?))
    }
}

/// Splits `/v1.41/images/json` into the version asked for and `/images/json`; checks it.
pub(crate) fn strip(path: &str) -> Result<(Option<String>, &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else { return Ok((None, path)) };
    let (text, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // `/version` itself, and paths like `/volumes`, start with `/v` too.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok((None, path));
    }
    let asked = Version::parse(text).ok_or_else(|| ApiError::bad_request(format!("invalid API version {text:?} in the path: expected /vMAJOR.MINOR/")))?;
    let (min, max) = (Version::parse(MIN_API_VERSION).expect("valid"), Version::parse(API_VERSION).expect("valid"));
    if asked < min {
        return Err(ApiError::bad_request(format!(
            "client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if asked > max {
        return Err(ApiError::bad_request(format!("client version {text} is too new. Maximum supported API version is {API_VERSION}")));
    }
    Ok((Some(text.to_string()), tail))
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn prefixes_are_stripped_and_checked() {
        assert_eq!(strip("/v1.41/images/json").unwrap(), (Some("1.41".into()), "/images/json"));
        assert_eq!(strip("/version").unwrap(), (None, "/version"));
        assert_eq!(strip("/volumes/x").unwrap(), (None, "/volumes/x"));
        assert_eq!(strip("/_ping").unwrap(), (None, "/_ping"));
        let old = strip("/v1.12/info").unwrap_err();
        assert_eq!(old.status, 400);
        assert!(old.message.contains("too old") && old.message.contains("1.24"), "{}", old.message);
        assert!(strip("/v1.99/info").unwrap_err().message.contains("too new"));
        assert!(strip("/v1.x/info").unwrap_err().message.contains("invalid API version"));
        // 1.9 is older than 1.24, not newer (numeric, not text, order).
        assert!(strip("/v1.9/info").unwrap_err().message.contains("too old"));
    }
}
