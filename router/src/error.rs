//! The library's error type.

/// Errors of Seaway itself (database errors stay [`sea_orm::DbErr`], so `?`
/// mixes with plain SeaORM code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value that cannot be used; names the variable.
    #[error("invalid {var}: {message}")]
    Config {
        /// The environment variable (or builder field) at fault.
        var: &'static str,
        /// What is wrong with it; never contains a password.
        message: String,
    },
    /// Connecting to a database failed; the URL is redacted.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The database, password redacted.
        url: String,
        /// What failed, password redacted.
        message: String,
    },
    /// A consistency token that this library did not issue.
    #[error("malformed consistency token: expected an LSN like 0/16B3748")]
    InvalidToken,
}

/// Replaces the password of a URL with `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                "<url with password>".to_owned()
            }
        }
        _ => url.to_owned(),
    }
}

/// Removes any password of `url` from a message (driver errors may echo it).
pub(crate) fn scrub(message: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(pw) if !pw.is_empty() => message.replace(pw, "***"),
            _ => message.to_owned(),
        },
        Err(_) => message.to_owned(),
    }
}
