//! Catalogue events: a product change that search must see writes a `product.updated` row into
//! `catalog_outbox` in the change's own transaction; the outbox relay publishes it to the
//! stream the search index consumers (and the back office) read.
//!
//! The transaction, on the default shard (where `products` and `catalog_outbox` live):
//! `UPDATE products SET <change>, version = version + 1` (which also locks the row), the row
//! read back, the product's stock read on a second connection (a flash-sale SKU's stock row
//! lives on the hot instance, which a transaction on a shard cannot touch), the event with the
//! whole document, COMMIT. The row lock orders the changes of one product: a later event has a
//! higher version and was read after the earlier one committed, so the index, which keeps the
//! highest version, ends at the latest state whatever order events arrive in.
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
    let res = change_in(db, &mut conn, id, set, reason).await;
    if !matches!(res, Ok(Some(_))) {
        let _ = conn.query_drop("ROLLBACK").await;
    }
    res
}

async fn change_in(
    db: &Pool,
    conn: &mut Conn,
    id: u64,
    set: Option<&str>,
    reason: &str,
) -> Result<Option<u64>, mysql_async::Error> {
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
    let mut side = db.get_conn().await?;
    let stock = source::stock_of(&mut side, std::slice::from_ref(&row)).await?;
    let category: Option<String> = side
        .query_first(format!("SELECT name FROM categories WHERE id = {}", row.1))
        .await?;
    drop(side);
    let categories = category.map(|c| (row.1, c)).into_iter().collect();
    let event = ProductEvent {
        product: source::to_doc(row, &categories, stock.get(&id).copied()),
        reason: reason.to_string(),
        changed_at_ms: unix_ms(),
    };
    let payload = json!(event).to_string();
    conn.query_drop(format!(
        "INSERT INTO catalog_outbox (aggregate_type, aggregate_id, event_type, payload) \
         VALUES ('product', {id}, {}, {})",
        lit(PRODUCT_UPDATED),
        lit(payload)
    ))
    .await?;
    conn.query_drop("COMMIT").await?;
    Ok(Some(version))
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
