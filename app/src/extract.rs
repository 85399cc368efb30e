//! Extractors whose every rejection has the error shape of API.md, and the
//! checks shared by handlers (ids, list bounds, strings).

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts};
use serde::Deserialize;
use std::collections::HashMap;

/// A JSON object body; unknown fields, wrong types and bad syntax become
/// [`ApiError`]s, and so does a body that is not an object (serde would take
/// an array for a struct, field by field).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| {
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::bad_request(
                "expected Content-Type: application/json",
                None,
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::bad_request("the request body could not be read", None)
                }
            })?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::unprocessable(
                "the request body must be a JSON object",
                None,
            ));
        }
        Ok(Json(value))
    }
}

/// Path segments as text; parsed with [`parse_id`].
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters as text; each handler says which it knows.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A positive 64-bit id from a path segment: anything else is a 400.
pub fn parse_id(raw: &str, field: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(n) if n > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::bad_request(
            format!("{field} must be a positive 64-bit integer"),
            Some(field),
        )),
    }
}

/// `limit` and `offset` of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    /// 1..=100, default 20.
    pub limit: u64,
    /// 0..=100000, default 0.
    pub offset: u64,
}

/// Query parameters, checked against the names a handler accepts.
pub struct Params(HashMap<String, String>);

impl Params {
    /// Rejects names outside `known` (a 400 naming the parameter).
    pub fn new(map: HashMap<String, String>, known: &[&str]) -> Result<Self, ApiError> {
        if let Some(k) = map
            .keys()
            .find(|k| !known.contains(&k.as_str()) && !["limit", "offset"].contains(&k.as_str()))
        {
            return Err(ApiError::bad_request(
                format!("unknown query parameter {k:?}"),
                Some(k),
            ));
        }
        Ok(Self(map))
    }

    /// The list bounds.
    pub fn page(&self) -> Result<Page, ApiError> {
        Ok(Page {
            limit: self.num("limit", 20, 1, 100)?,
            offset: self.num("offset", 0, 0, 100_000)?,
        })
    }

    fn num(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => Err(ApiError::bad_request(
                    format!("{name} must be an integer in {min}..={max}"),
                    Some(name),
                )),
            },
        }
    }

    /// A text parameter of at most `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.chars().count() > max || v.contains('\0') => Err(ApiError::bad_request(
                format!("{name} must be at most {max} characters"),
                Some(name),
            )),
            Some(v) => Ok(Some(v.as_str())),
        }
    }

    /// `true` or `false`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad_request(
                format!("{name} must be true or false"),
                Some(name),
            )),
        }
    }

    /// A positive id.
    pub fn id(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.0.get(name).map(|v| parse_id(v, name)).transpose()
    }
}

/// Checks a required text field: non-empty, at most `max` characters, no NUL.
pub fn check_text(value: &str, field: &str, max: usize, allow_empty: bool) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::unprocessable(
            format!("{field} must not contain NUL characters"),
            Some(field),
        ));
    }
    if !allow_empty && value.trim().is_empty() {
        return Err(ApiError::unprocessable(
            format!("{field} must not be empty"),
            Some(field),
        ));
    }
    if value.chars().count() > max {
        return Err(ApiError::unprocessable(
            format!("{field} must be at most {max} characters"),
            Some(field),
        ));
    }
    Ok(())
}

/// `[A-Za-z0-9_]{1,50}`.
pub fn check_username(u: &str) -> Result<(), ApiError> {
    if u.is_empty() || u.len() > 50 || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::unprocessable(
            "username must be 1 to 50 characters of A-Z, a-z, 0-9 and _",
            Some("username"),
        ));
    }
    Ok(())
}

/// Deserializes a field that may be absent (outer `None`), `null` (inner
/// `None`) or a value.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// Deserializes an optional field that, when present, must not be `null`
/// (a column that cannot be NULL): `null` is an error naming the field.
pub fn not_null<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom("must not be null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_i64() {
        for ok in ["1", "42", "9223372036854775807"] {
            assert!(parse_id(ok, "id").is_ok(), "{ok}");
        }
        for bad in [
            "0",
            "-1",
            "+1",
            "1.5",
            "abc",
            "",
            "9223372036854775808",
            " 1",
            "0x10",
        ] {
            assert!(parse_id(bad, "id").is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_are_bounded() {
        let p = |pairs: &[(&str, &str)]| {
            Params::new(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                &[],
            )
            .and_then(|p| p.page())
        };
        assert_eq!(
            p(&[]).ok(),
            Some(Page {
                limit: 20,
                offset: 0
            })
        );
        assert_eq!(
            p(&[("limit", "100"), ("offset", "100000")]).ok(),
            Some(Page {
                limit: 100,
                offset: 100_000
            })
        );
        for bad in [
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "x"),
            ("offset", "-1"),
            ("offset", "100001"),
        ] {
            assert!(p(&[bad]).is_err(), "{bad:?}");
        }
        assert!(p(&[("nope", "1")]).is_err());
    }
}
