//! JSON bodies of cached query results, rendered once per cached value.
//!
//! An L1 hit hands out the cache's own `Arc` of the rows. The same `Arc` always
//! holds the same rows (a write makes the cache load a new one), so the body
//! rendered from it can be kept beside it and sent again as it is: a hit then
//! skips copying the rows, converting them to wire types and serializing
//! them. The memo is keyed by the value's identity and holds a `Weak` to it,
//! so it can never answer for other rows, and it never keeps rows alive.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::sync::{Arc, Weak};

/// Bytes of rendered bodies kept at most (least recently used first out).
pub const MAX_BYTES: u64 = 32 << 20;

#[derive(Clone)]
struct Rendered {
    /// The value the body was rendered from; its allocation (not its rows)
    /// stays while this does, so no other value can take its address.
    of: Weak<dyn Any + Send + Sync>,
    body: Bytes,
}

/// Rendered JSON bodies by the identity of the cached value they show.
/// Cloning is an `Arc` increment (the application state is cloned per
/// request).
#[derive(Clone)]
pub struct Bodies {
    memo: Arc<moka::future::Cache<usize, Rendered>>,
}

impl Default for Bodies {
    fn default() -> Self {
        Self::new(MAX_BYTES)
    }
}

impl Bodies {
    /// A memo of at most `max_bytes` of bodies.
    pub fn new(max_bytes: u64) -> Self {
        let memo = moka::future::Cache::builder()
            // the body, and about what an entry costs besides
            .weigher(|_, r: &Rendered| u32::try_from(r.body.len() + 160).unwrap_or(u32::MAX))
            .max_capacity(max_bytes)
            .build();
        Self {
            memo: Arc::new(memo),
        }
    }

    /// The body of `value`, from the memo when the cache holds `value` and it
    /// was rendered before, else `render(value)` (kept for next time only
    /// when the cache holds `value`: a bypassed or refused read is a
    /// value of its own, seen once).
    pub async fn body<V, F>(&self, value: &Arc<V>, render: F) -> Bytes
    where
        V: Any + Send + Sync,
        F: FnOnce(&V) -> Vec<u8>,
    {
        if Arc::strong_count(value) == 1 {
            return render(value).into();
        }
        let addr = Arc::as_ptr(value).cast::<()>() as usize;
        if let Some(r) = self.memo.get(&addr).await
            && r.of.as_ptr().cast::<()>() as usize == addr
        {
            return r.body;
        }
        let body = Bytes::from(render(value));
        let of: Weak<dyn Any + Send + Sync> = Arc::downgrade(value) as _;
        self.memo
            .insert(
                addr,
                Rendered {
                    of,
                    body: body.clone(),
                },
            )
            .await;
        body
    }
}

/// A response of ready JSON bytes, as `axum::Json` would send them.
pub struct JsonBody(pub Bytes);

impl IntoResponse for JsonBody {
    fn into_response(self) -> Response {
        (
            [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// `value` as JSON. The buffer starts at the size of a page of stories and
/// is trimmed to the body, which may be kept in the memo for long.
pub fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 << 10);
    // Serializing the wire types cannot fail: no maps with non-string keys,
    // no failing `Serialize` impls.
    serde_json::to_writer(&mut buf, value).expect("wire types serialize");
    buf.shrink_to_fit();
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cached_value_is_rendered_once_and_a_new_one_again() {
        let bodies = Bodies::default();
        let held = Arc::new(vec![1, 2, 3]);
        let cache_copy = held.clone(); // as the L1 would hold it
        let renders = std::cell::Cell::new(0);
        let render = |v: &Vec<i32>| {
            renders.set(renders.get() + 1);
            json(v)
        };
        let a = bodies.body(&held, render).await;
        let b = bodies.body(&held, render).await;
        assert_eq!((a.as_ref(), b.as_ref()), (&b"[1,2,3]"[..], &b"[1,2,3]"[..]));
        assert_eq!(renders.get(), 1, "the second body came from the memo");

        // Another value is rendered from its own rows (the memo's `Weak`
        // keeps the old value's address from being reused meanwhile).
        drop((held, cache_copy));
        let other = Arc::new(vec![4]);
        let _keep = other.clone();
        assert_eq!(bodies.body(&other, render).await.as_ref(), b"[4]");
        assert_eq!(renders.get(), 2);

        // A value the cache does not hold is rendered every time, never kept.
        let alone = Arc::new(vec![5]);
        bodies.body(&alone, render).await;
        bodies.body(&alone, render).await;
        assert_eq!(renders.get(), 4);
    }
}
