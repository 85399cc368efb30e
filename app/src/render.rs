//! JSON bodies of cached query results, rendered once per cached value.
//!
//! An L1 hit hands out the cache's own `Arc` of the rows. The same `Arc` always
//! holds the same rows (a write makes the cache load a new one), so the body
//! rendered from it can be kept beside it and sent again as it is: a hit then
//! skips copying the rows, converting them to wire types and serializing
//! them. A body is a function of the rows, of the render function and of the
//! page it shows, and the memo is keyed by exactly those: the value's
//! identity (with a `Weak` to it, so it can never answer for other rows and
//! never keeps rows alive), the render function's type (a function that
//! captures nothing) and the page.
//!
//! The service keeps the bodies of pages (listings, the featured list,
//! feeds, followers), whose twenty rows take tens of microseconds to copy and
//! serialize. A single story renders in about a microsecond and is not kept:
//! its 100,000 ids would only churn the memo.

use crate::extract::Page;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use std::any::{Any, TypeId};
use std::sync::{Arc, Weak};

/// Bytes of rendered bodies kept at most (least recently used first out).
pub const MAX_BYTES: u64 = 32 << 20;

#[derive(Clone)]
struct Rendered {
    /// The value the body was rendered from, held and never read: its
    /// allocation (not its rows) stays while this does, so no other value
    /// can take its address, the key of this entry.
    _address: Weak<dyn Any + Send + Sync>,
    body: Bytes,
}

/// What a body is rendered from.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Source {
    /// The address of the cached value.
    addr: usize,
    /// The render function.
    render: TypeId,
    /// The page the body shows.
    page: Page,
}

/// Rendered JSON bodies by what they were rendered from.
/// Cloning is an `Arc` increment (the application state is cloned per
/// request).
#[derive(Clone)]
pub struct Bodies {
    memo: Arc<moka::future::Cache<Source, Rendered>>,
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
            .weigher(|_: &Source, r: &Rendered| {
                u32::try_from(r.body.len() + 160).unwrap_or(u32::MAX)
            })
            .max_capacity(max_bytes)
            .build();
        Self {
            memo: Arc::new(memo),
        }
    }

    /// The body `render(value, page)`, from the memo when `value` was
    /// rendered so before. It is kept only when something else holds `value`
    /// too (the cache, or the other readers of one load): a bypassed or
    /// refused read is a value of its own, seen once. Whatever is kept, a
    /// body is only ever returned for the value it was rendered from.
    /// `render` must be a function of its arguments alone
    /// (`F: Copy + 'static`: a closure that captures nothing).
    pub async fn body<V, F>(&self, value: &Arc<V>, page: Page, render: F) -> Bytes
    where
        V: Any + Send + Sync,
        F: Fn(&V, Page) -> Vec<u8> + Copy + 'static,
    {
        if Arc::strong_count(value) == 1 {
            return render(value, page).into();
        }
        // While an entry lives, its `Weak` keeps the address from being
        // taken by any other value: an entry found by address is this value's.
        let from = Source {
            addr: Arc::as_ptr(value).cast::<()>() as usize,
            render: TypeId::of::<F>(),
            page,
        };
        if let Some(r) = self.memo.get(&from).await {
            return r.body;
        }
        let body = Bytes::from(render(value, page));
        let address: Weak<dyn Any + Send + Sync> = Arc::downgrade(value) as _;
        self.memo
            .insert(
                from,
                Rendered {
                    _address: address,
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
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[tokio::test]
    async fn a_cached_value_is_rendered_once_and_a_new_one_again() {
        let bodies = Bodies::default();
        let held = Arc::new(vec![1, 2, 3]);
        let cache_copy = held.clone(); // as the L1 would hold it
        static RENDERS: AtomicUsize = AtomicUsize::new(0);
        let renders = || RENDERS.load(Relaxed);
        let first = Page {
            limit: 5,
            offset: 0,
        };
        let render = |v: &Vec<i32>, _: Page| {
            RENDERS.fetch_add(1, Relaxed);
            json(v)
        };
        let a = bodies.body(&held, first, render).await;
        let b = bodies.body(&held, first, render).await;
        assert_eq!((a.as_ref(), b.as_ref()), (&b"[1,2,3]"[..], &b"[1,2,3]"[..]));
        assert_eq!(renders(), 1, "the second body came from the memo");

        // The same rows shown by another function, or as another page, are
        // rendered for it.
        let count = |v: &Vec<i32>, _: Page| {
            RENDERS.fetch_add(1, Relaxed);
            json(&v.len())
        };
        assert_eq!(bodies.body(&held, first, count).await.as_ref(), b"3");
        let paged = |v: &Vec<i32>, p: Page| {
            RENDERS.fetch_add(1, Relaxed);
            json(&(v, p.limit))
        };
        let page = |limit| Page { limit, offset: 0 };
        for _ in 0..2 {
            assert_eq!(
                bodies.body(&held, page(5), paged).await.as_ref(),
                b"[[1,2,3],5]"
            );
            assert_eq!(
                bodies.body(&held, page(6), paged).await.as_ref(),
                b"[[1,2,3],6]"
            );
        }
        assert_eq!(renders(), 4);

        // Another value is rendered from its own rows (the memo's `Weak`
        // keeps the old value's address from being reused meanwhile).
        drop((held, cache_copy));
        let other = Arc::new(vec![4]);
        let _keep = other.clone();
        assert_eq!(bodies.body(&other, first, render).await.as_ref(), b"[4]");
        assert_eq!(renders(), 5);

        // A value the cache does not hold is rendered every time, never kept.
        let alone = Arc::new(vec![5]);
        bodies.body(&alone, first, render).await;
        bodies.body(&alone, first, render).await;
        assert_eq!(renders(), 7);
    }
}
