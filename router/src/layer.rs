//! The tower layer for axum: one scope per request, `X-Consistency-Token` in
//! and out, `X-DB-Route` and `X-Cache` on the way out.

use crate::conn::Db;
use crate::lsn::Lsn;
use crate::scope::Scope;
use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The request header carrying a consistency token, and the response header issuing one.
pub const TOKEN_HEADER: &str = "x-consistency-token";
/// Where the last read of the request was served from.
pub const ROUTE_HEADER: &str = "x-db-route";
/// The cache outcome of the last read of the request.
pub const CACHE_HEADER: &str = "x-cache";

/// Opens a [`Scope`] around every request.
///
/// A request whose `X-Consistency-Token` does not parse is answered 400 with
/// the error shape of `shared/API.md`, before the handler runs.
#[derive(Clone)]
pub struct SeawayLayer {
    db: Db,
}

impl SeawayLayer {
    /// A layer for `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl<S> tower::Layer<S> for SeawayLayer {
    type Service = SeawayService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SeawayService {
            inner,
            db: self.db.clone(),
        }
    }
}

/// The service made by [`SeawayLayer`].
#[derive(Clone)]
pub struct SeawayService<S> {
    inner: S,
    db: Db,
}

fn bad_token() -> Response<Body> {
    let body = serde_json::json!({"error": {
        "code": "invalid_input",
        "message": "malformed X-Consistency-Token: send back a token this service issued",
        "field": "X-Consistency-Token"
    }});
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl<S> tower::Service<Request<Body>> for SeawayService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let scope = match req.headers().get(TOKEN_HEADER) {
            None => Scope::new(),
            Some(v) => match v
                .to_str()
                .map_err(|_| ())
                .and_then(|s| Lsn::parse(s).map_err(|_| ()))
            {
                Ok(lsn) => Scope::with_min_lsn(lsn),
                Err(()) => return Box::pin(async { Ok(bad_token()) }),
            },
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let db = self.db.clone();
        Box::pin(async move {
            let mut resp = scope.run(inner.call(req)).await?;
            let st = scope.state();
            let h = resp.headers_mut();
            let route = st.last_route().map(|r| r.header_value());
            let cache = st.last_cache().map(|c| c.as_str());
            match (route, st.wrote()) {
                (Some(r), _) => {
                    if let Ok(v) = HeaderValue::from_str(&r) {
                        h.insert(ROUTE_HEADER, v);
                    }
                }
                (None, true) => {
                    h.insert(ROUTE_HEADER, HeaderValue::from_static("primary"));
                }
                _ => {}
            }
            match (cache, st.wrote()) {
                (Some(c), _) => {
                    h.insert(CACHE_HEADER, HeaderValue::from_static(c));
                }
                (None, true) => {
                    h.insert(CACHE_HEADER, HeaderValue::from_static("bypass"));
                }
                _ => {}
            }
            if let Some(lsn) = db.token_for(st)
                && let Ok(v) = HeaderValue::from_str(&lsn.to_string())
            {
                h.insert(TOKEN_HEADER, v);
            }
            Ok(resp)
        })
    }
}
