//! The tower layer for axum: one scope per request, `X-Consistency-Token`
//! in (checked) and out (signed), `X-DB-Route` and `X-Cache` on the way out.

use crate::conn::Db;
use crate::scope::Scope;
use crate::token::TokenError;
use axum::body::Body;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The request header carrying a consistency token, and the response header issuing one.
pub const TOKEN_HEADER: &str = "x-consistency-token";
/// Where the request's last read that went to the database was served from
/// (when none did: its last read).
pub const ROUTE_HEADER: &str = "x-db-route";
/// The cache outcome of the request's last read that went to the database
/// (`miss`, `bypass`; when none did: its last read's hit).
pub const CACHE_HEADER: &str = "x-cache";

type BadToken = Arc<dyn Fn(TokenError) -> Response<Body> + Send + Sync>;

/// Opens a [`Scope`] around every request.
///
/// A request whose token was not issued by this service (or names another
/// database cluster, or a position ahead of the primary) is answered by the
/// bad-token handler before the handler runs: a plain `400` unless
/// [`on_bad_token`](Self::on_bad_token) says otherwise. Nothing of it
/// reaches the database or the cache.
#[derive(Clone)]
pub struct SeawayLayer {
    db: Db,
    headers: bool,
    token_header: HeaderName,
    bad_token: BadToken,
}

impl std::fmt::Debug for SeawayLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeawayLayer")
            .field("headers", &self.headers)
            .field("token_header", &self.token_header)
            .finish_non_exhaustive()
    }
}

fn plain_400(e: TokenError) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("bad {TOKEN_HEADER}: {e}")));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl SeawayLayer {
    /// A layer for `db`: route and cache headers on, a plain 400 for a bad token.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            headers: true,
            token_header: HeaderName::from_static(TOKEN_HEADER),
            bad_token: Arc::new(plain_400),
        }
    }

    /// Whether responses show `X-DB-Route` and `X-Cache` (on by default).
    #[must_use]
    pub fn route_headers(mut self, on: bool) -> Self {
        self.headers = on;
        self
    }

    /// The header that carries tokens in and out (`X-Consistency-Token`).
    #[must_use]
    pub fn token_header(mut self, name: HeaderName) -> Self {
        self.token_header = name;
        self
    }

    /// The response to a request with a bad token.
    #[must_use]
    pub fn on_bad_token(
        mut self,
        f: impl Fn(TokenError) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        self.bad_token = Arc::new(f);
        self
    }
}

impl<S> tower::Layer<S> for SeawayLayer {
    type Service = SeawayService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SeawayService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SeawayLayer`].
#[derive(Clone, Debug)]
pub struct SeawayService<S> {
    inner: S,
    layer: SeawayLayer,
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let scope = match req.headers().get(&layer.token_header) {
                None => Scope::new(),
                Some(v) => {
                    let verified = match v.to_str() {
                        Ok(s) => layer.db.verify_token(s).await,
                        Err(_) => Err(TokenError::Malformed),
                    };
                    match verified {
                        Ok(scope) => scope,
                        Err(e) => return Ok((layer.bad_token)(e)),
                    }
                }
            };
            let mut resp = scope.run(inner.call(req)).await?;
            let st = scope.state();
            let h = resp.headers_mut();
            if layer.headers {
                let route = st.last_route().map(|r| r.header_value());
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
                match (st.last_cache(), st.wrote()) {
                    (Some(c), _) => {
                        h.insert(CACHE_HEADER, HeaderValue::from_static(c.as_str()));
                    }
                    (None, true) => {
                        h.insert(CACHE_HEADER, HeaderValue::from_static("bypass"));
                    }
                    _ => {}
                }
            }
            if let Some(token) = layer.db.token_for(st)
                && let Ok(v) = HeaderValue::from_str(&token)
            {
                h.insert(layer.token_header.clone(), v);
            }
            Ok(resp)
        })
    }
}
