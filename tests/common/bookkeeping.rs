//! A database's counter, tag versions and LSNs as one Redis server holds
//! them, read and set back: how a failover that lost their last writes
//! leaves them.

use redis::aio::MultiplexedConnection;

/// The counter, tag versions and LSNs under `prefix` on this server, sorted.
pub async fn bookkeeping(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<(String, String)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{prefix}:*"))
        .query_async(conn)
        .await
        .expect("keys");
    let mut out = Vec::new();
    for k in keys {
        if k.ends_with(":seq") || k.contains(":tv:") || k.contains(":tl:") {
            let v: String = redis::cmd("GET")
                .arg(&k)
                .query_async(conn)
                .await
                .expect("get");
            out.push((k, v));
        }
    }
    out.sort();
    out
}

/// Sets them back to `before` (what [`bookkeeping`] read): keys made since
/// are deleted.
pub async fn set_back(conn: &mut MultiplexedConnection, prefix: &str, before: &[(String, String)]) {
    for (k, _) in bookkeeping(conn, prefix).await {
        let _: () = redis::cmd("DEL")
            .arg(&k)
            .query_async(conn)
            .await
            .expect("del");
    }
    for (k, v) in before {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(v)
            .query_async(conn)
            .await
            .expect("set");
    }
}
