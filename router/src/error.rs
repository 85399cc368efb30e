//! The library's error type, and the redaction of secrets in URLs.

/// Errors of Seaway itself (database errors stay [`sea_orm::DbErr`], so `?`
/// mixes with plain SeaORM code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value that cannot be used; names the variable.
    #[error("invalid {var}: {message}")]
    Config {
        /// The environment variable (or builder field) at fault.
        var: String,
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
}

/// Query parameters that carry secrets (libpq's and sqlx's spellings).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "passfile",
    "token",
    "secret",
    "auth",
];

fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS
        .iter()
        .any(|s| n == *s || n.ends_with("password"))
}

/// A URL fit to print: the password (in the authority or in a query
/// parameter such as `password=` or `sslpassword=`) replaced by `***`. A
/// URL that does not parse prints as `<unparseable url>`: it may hold a
/// secret anywhere.
///
/// ```
/// assert_eq!(seaway::redact_url("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
/// assert_eq!(seaway::redact_url("postgres://app@db/x?password=s3cret"), "postgres://app@db/x?password=***");
/// assert_eq!(seaway::redact_url("postgres://app:a/b@db/x"), "<unparseable url>");
/// ```
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable url>".to_owned();
    };
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "<unparseable url>".to_owned();
    }
    if parsed.query_pairs().any(|(k, _)| secret_param(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        return parsed.to_string().replace("%2A%2A%2A", "***");
    }
    parsed.to_string()
}

/// The secrets of `url`: its password and secret query parameters (raw and
/// percent-decoded). For a URL that does not parse, every part after the
/// scheme that could be a password.
fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    match url::Url::parse(url) {
        Ok(p) => {
            if let Some(pw) = p.password() {
                out.push(pw.to_owned());
                if let Ok(d) = percent_decode(pw) {
                    out.push(d);
                }
            }
            for (k, v) in p.query_pairs() {
                if secret_param(&k) {
                    out.push(v.into_owned());
                }
            }
        }
        Err(_) => {
            // user:password@host: whatever lies between the first ':' after
            // the scheme and the last '@'
            if let Some(rest) = url.split_once("://").map(|x| x.1)
                && let Some(at) = rest.rfind('@')
                && let Some(colon) = rest[..at].find(':')
            {
                out.push(rest[colon + 1..at].to_owned());
            }
        }
    }
    out.retain(|s| s.len() >= 2);
    out
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3).ok_or(())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Removes the secrets of `url` (its password, a `password=` or
/// `sslpassword=` parameter, percent-decoded too) from a message: driver
/// errors may echo them.
///
/// ```
/// let url = "postgres://app:s3cret@db/x";
/// assert_eq!(
///     seaway::redact_message("auth failed for s3cret", url),
///     "auth failed for ***"
/// );
/// ```
pub fn redact_message(message: &str, url: &str) -> String {
    scrub(message, url)
}

/// As [`redact_message`].
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut m = message.to_owned();
    for s in secrets(url) {
        m = m.replace(&s, "***");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nasty_urls_never_print_their_secret() {
        // (url, its secret as a driver might echo it)
        let cases = [
            ("postgres://u:s3cret@h/d", "s3cret"),
            ("postgres://u:s3cret@h:5432/d?sslmode=require", "s3cret"),
            ("postgres://u@h/d?password=s3cret", "s3cret"),
            (
                "postgres://u@h/d?sslmode=verify-full&sslpassword=s3cret",
                "s3cret",
            ),
            ("postgres://u@h/d?PASSWORD=s3cret", "s3cret"),
            ("postgres://u:s3%2Fcret@h/d", "s3/cret"),
            ("postgres://u:s3/cret@h/d", "s3/cret"),
            ("postgres://u:s3cret@[::1/d", "s3cret"),
            ("redis://:s3cret@h:6379/", "s3cret"),
            ("rediss://user:s3cret@h:6380/0", "s3cret"),
            ("not a url s3cret", "s3cret"),
        ];
        for (url, secret) in cases {
            let shown = redact_url(url);
            assert!(
                !shown.contains("s3") && !shown.contains("cret"),
                "{url} -> {shown}"
            );
            let msg = format!("error connecting to {url}: password {secret} rejected");
            let scrubbed = scrub(&msg, url);
            if url::Url::parse(url).is_ok() {
                assert!(!scrubbed.contains(secret), "{url} -> {scrubbed}");
            }
        }
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            redact_url("sqlite://./data/x.db?mode=rwc"),
            "sqlite://./data/x.db?mode=rwc"
        );
    }

    #[test]
    fn a_decoded_password_is_scrubbed_too() {
        let url = "postgres://u:p%40ss@h/d";
        assert_eq!(scrub("auth failed for p@ss", url), "auth failed for ***");
    }
}
