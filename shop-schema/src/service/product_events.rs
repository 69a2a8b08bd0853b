//! Catalogue events: a product change that search must see writes a `product.updated` row into
//! `catalog_outbox` in the change's own transaction; the outbox relay publishes it to the
//! stream the search index consumers (and the back office) read.
//!
//! The transaction, on the default shard (where `products` and `catalog_outbox` live):
//! `UPDATE products SET <change>, version = version + 1` (which also locks the row), the row
//! read back, the event with the whole document, COMMIT. The row lock orders the changes of one
//! product, so a later event has a higher version, and the index, which keeps the highest
//! version, ends at the latest document whatever order events arrive in.
//!
//! The product's stock and category are read just before, on the same connection but outside
//! the transaction (a flash-sale SKU's stock row lives on the hot instance, which a transaction
//! on a shard cannot touch; and one connection at a time, so concurrent changes never wait for
//! the pool while holding a row lock). Stock can move in between: after the commit it is read
//! again, and if the in-stock status differs from the event's, another event (version bump
//! only) follows, up to three rounds.
//!
//! What writes an event: a price change (in the price's transaction), a restock, and a sale or
//! a give-back that flips a SKU between in stock and sold out (stock changes are autocommit
//! statements of their own, so the event follows them, in a second transaction: a crash in
//! between leaves the index's stock status stale until the next change or `reindex`). Sales
//! that leave stock do not write events: the popularity they add reaches the index with the
//! product's next event or rebuild.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use serde_json::json;

use super::{ApiError, Shop};
use crate::db::lit;
use crate::search::source::{self, PRODUCT_COLUMNS, ProductRow};
use crate::search::sync::unix_ms;
use crate::search::{PRODUCT_UPDATED, ProductEvent};

/// Applies `set` (SQL assignments for `products`, or none for a status change kept elsewhere)
/// to product `id`, bumps its version and writes its catalogue event, in one transaction.
/// `Ok(None)`: no such product (nothing written). Returns the new version.
pub async fn change_product(
    db: &Pool,
    id: u64,
    set: Option<&str>,
    reason: &str,
) -> Result<Option<u64>, mysql_async::Error> {
    let mut conn = db.get_conn().await?;
    let mut set = set;
    let mut version = None;
    for _ in 0..3 {
        let res = change_in(&mut conn, id, set, reason).await;
        let in_stock = match res {
            Ok(Some((v, in_stock))) => {
                version = Some(v);
                in_stock
            }
            other => {
                let _ = conn.query_drop("ROLLBACK").await;
                return other.map(|_| None);
            }
        };
        // The stock may have moved since it was read: the last event must say how it is now.
        let now = stock_now(&mut conn, id).await?;
        if now.is_none_or(|(stock, _)| (stock > 0) == in_stock) {
            break;
        }
        set = None;
    }
    Ok(version)
}

/// `(stock, sold)` of SKU `id` on its primary (the hot instance for a flash-sale SKU).
async fn stock_now(conn: &mut Conn, id: u64) -> Result<Option<(i64, i64)>, mysql_async::Error> {
    conn.query_first(format!(
        "/* peakgate: route=primary */ SELECT stock, sold FROM sku_stock WHERE sku_id = {id}"
    ))
    .await
}

/// One round: returns the new version and the in-stock status the event carries.
async fn change_in(
    conn: &mut Conn,
    id: u64,
    set: Option<&str>,
    reason: &str,
) -> Result<Option<(u64, bool)>, mysql_async::Error> {
    let stock = stock_now(conn, id).await?;
    let assignments = match set {
        Some(s) => format!("{s}, version = version + 1"),
        None => "version = version + 1".to_string(),
    };
    conn.query_drop("BEGIN").await?;
    conn.query_drop(format!("UPDATE products SET {assignments} WHERE id = {id}"))
        .await?;
    if conn.affected_rows() == 0 {
        return Ok(None);
    }
    let row: Option<ProductRow> = conn
        .query_first(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = {id}"
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let version = row.10;
    let category: Option<String> = conn
        .query_first(format!("SELECT name FROM categories WHERE id = {}", row.1))
        .await?;
    let categories = category.map(|c| (row.1, c)).into_iter().collect();
    let event = ProductEvent {
        product: source::to_doc(row, &categories, stock),
        reason: reason.to_string(),
        changed_at_ms: unix_ms(),
    };
    let in_stock = event.product.in_stock;
    conn.query_drop(format!(
        "INSERT INTO catalog_outbox (aggregate_type, aggregate_id, event_type, payload) \
         VALUES ('product', {id}, {}, {})",
        lit(PRODUCT_UPDATED),
        lit(json!(event).to_string())
    ))
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(Some((version, in_stock)))
}

/// After stock of `skus` was taken (`taken`) or given back (`!taken`, `(sku, quantity)`):
/// writes a catalogue event for each SKU whose in-stock status flipped (taken down to 0, or
/// given back from 0). Failures are logged: the sale itself is done.
pub async fn stock_moved(shop: &Shop, skus: &[(u64, i64)], taken: bool) {
    if let Err(e) = stock_moved_in(shop, skus, taken).await {
        tracing::warn!(error = %e, ?skus, "stock status event not written; reindex repairs the index");
    }
}

async fn stock_moved_in(shop: &Shop, skus: &[(u64, i64)], taken: bool) -> Result<(), ApiError> {
    if skus.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = skus.iter().map(|s| s.0.to_string()).collect();
    let mut conn = shop.db.get_conn().await?;
    let left: Vec<(u64, i64)> = conn
        .query(format!(
            "/* peakgate: route=primary */ SELECT sku_id, stock FROM sku_stock WHERE sku_id IN ({})",
            ids.join(", ")
        ))
        .await?;
    drop(conn);
    for (sku, qty) in skus {
        let flipped = left
            .iter()
            .any(|(id, stock)| *id == *sku && if taken { *stock == 0 } else { *stock == *qty });
        if flipped {
            change_product(&shop.db, *sku, None, "stock").await?;
        }
    }
    Ok(())
}
