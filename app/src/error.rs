//! One error type for every handler, written in the error shape of API.md.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sea_orm::{DbErr, SqlErr};
use serde_json::json;

/// An error answer: status, code, message and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            status,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }
    /// 400 `invalid_input`.
    pub fn bad_request(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, field)
    }
    /// 422 `invalid_input`.
    pub fn unprocessable(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message, field)
    }
    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"), None)
    }
    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::new(StatusCode::CONFLICT, message, field)
    }
    /// 413 `payload_too_large`.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is over 1 MiB",
            None,
        )
    }
    /// 503 `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message, None)
    }
    /// 500 `internal`: a bug. The cause is logged, not sent.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
    }
    /// The same error with another status (its code follows the status).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The error code of API.md for the status.
    pub fn code(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 405 | 422 => "invalid_input",
            404 => "not_found",
            409 => "conflict",
            413 => "payload_too_large",
            503 => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code(), "message": self.message});
        if let Some(f) = &self.field {
            error["field"] = json!(f);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<DbErr> for ApiError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                return Self::conflict("already exists", None);
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                return Self::unprocessable("a referenced row does not exist", None);
            }
            _ => {}
        }
        if seaway::is_connection_error(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return Self::unavailable("the database is unavailable; try again");
        }
        if let DbErr::RecordNotFound(_) = e {
            return Self::not_found("record");
        }
        tracing::error!(error = %e, "unexpected database error");
        Self::internal()
    }
}

/// The field named in a serde message: `unknown field `x``, `missing field `x``,
/// or a `path: message` prefix.
fn serde_field(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = msg.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    let (path, _) = msg.split_once(": ")?;
    (!path.is_empty() && !path.contains(' ') && path != ".").then(|| path.to_owned())
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                let inner = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let field = serde_field(&inner);
                Self::unprocessable(
                    format!(
                        "invalid request body: {}",
                        inner.split(" at line").next().unwrap_or("")
                    ),
                    field.as_deref(),
                )
            }
            JsonRejection::JsonSyntaxError(_) => {
                Self::bad_request("request body is not valid JSON", None)
            }
            JsonRejection::MissingJsonContentType(_) => {
                Self::bad_request("expected Content-Type: application/json", None)
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body is over 1 MiB",
                None,
            ),
            other => Self::bad_request(other.body_text(), None),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(format!("invalid path: {}", r.body_text()), None)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query string: {}", r.body_text()), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_statuses() {
        assert_eq!(ApiError::bad_request("x", None).code(), "invalid_input");
        assert_eq!(ApiError::unprocessable("x", None).code(), "invalid_input");
        assert_eq!(ApiError::not_found("x").code(), "not_found");
        assert_eq!(ApiError::conflict("x", None).code(), "conflict");
        assert_eq!(ApiError::unavailable("x").code(), "unavailable");
        assert_eq!(ApiError::internal().code(), "internal");
    }

    #[test]
    fn finds_fields_in_serde_messages() {
        assert_eq!(
            serde_field("unknown field `foo`, expected one of").as_deref(),
            Some("foo")
        );
        assert_eq!(
            serde_field("missing field `title`").as_deref(),
            Some("title")
        );
        assert_eq!(
            serde_field("author_id: invalid type: string").as_deref(),
            Some("author_id")
        );
        assert_eq!(serde_field("invalid type: map").as_deref(), None);
    }
}
