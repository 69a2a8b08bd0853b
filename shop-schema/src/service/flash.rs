//! The flash sale: one unit per request of a flash-sale SKU, decided by the database.
//!
//! `UPDATE sku_stock SET stock = stock - 1 ... WHERE sku_id = ? AND stock > 0` runs on the hot
//! instance (the proxy's [hotspot] section); one affected row is a sale, none is "sold out". The
//! order is written afterwards on the member's shard; if that fails the unit is given back.
//! `stock + sold` stays equal to the stock set by `PUT /admin/skus/{sku}/stock`, and `sold`
//! equals the flash-sale order lines written since: the load generator checks both.

use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mysql_async::prelude::Queryable;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Member, mark_write};
use super::catalog::cached_product;
use super::orders::{
    Line, NewOrder, WriteFailure, idempotency_key, order_json, remember, replay, request_hash,
    return_stock, take_stock, write_order,
};
use super::{ApiError, AppState, JsonBody, product_events};
use crate::money::Money;

/// `POST /flash/{sku}/buy`: one unit, or 409 `sold_out`. Takes an optional `Idempotency-Key`.
pub async fn buy(
    State(shop): State<AppState>,
    member: Member,
    Path(sku): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&["flash", &sku.to_string()]);
    if let Some(k) = &key
        && let Some(r) = replay(&shop, member.0, k, &hash).await?
    {
        return Ok(r);
    }
    // Title and price may come from the cache (invalidated on change); stock never does.
    let (product, _) = cached_product(&shop, sku).await?;
    let product = product.ok_or_else(|| ApiError::NotFound(format!("no product {sku}")))?;
    if !product.is_flash_sale {
        return Err(ApiError::Unprocessable(format!(
            "product {sku} is not in a flash sale"
        )));
    }
    let unit_price = Money::parse(&product.price)
        .ok_or_else(|| ApiError::Internal(format!("price of {sku}: {:?}", product.price)))?;

    let mut conn = shop.db.get_conn().await?;
    let sold = take_stock(&mut conn, sku, 1).await;
    drop(conn);
    match sold {
        Ok(true) => {}
        Ok(false) => {
            shop.metrics.flash_sold_out.fetch_add(1, Relaxed);
            return Err(ApiError::SoldOut);
        }
        Err(e) => {
            shop.metrics.flash_failed.fetch_add(1, Relaxed);
            return Err(e.into());
        }
    }
    let order = NewOrder {
        member: member.0,
        kind: "flash_sale",
        lines: vec![Line {
            sku_id: sku,
            title: product.title,
            unit_price,
            quantity: 1,
        }],
        idempotency_key: key.clone(),
    };
    match write_order(&shop, &order).await {
        Ok((id, total)) => {
            shop.metrics.flash_success.fetch_add(1, Relaxed);
            let later = shop.clone();
            tokio::spawn(
                async move { product_events::stock_moved(&later, &[(sku, 1)], true).await },
            );
            shop.metrics.orders_flash.fetch_add(1, Relaxed);
            shop.metrics
                .revenue_cents
                .fetch_add(total.0.max(0) as u64, Relaxed);
            mark_write(&shop, member.0).await;
            let body = order_json(id, &order, "pending", total);
            if let Some(k) = &key {
                remember(&shop, member.0, k, &hash, id, &body).await;
            }
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(WriteFailure::DuplicateKey) => {
            return_stock(&shop, sku, 1).await;
            let k = key.as_deref().unwrap_or_default();
            replay(&shop, member.0, k, &hash)
                .await?
                .ok_or_else(|| ApiError::Internal("duplicate key but no order".into()))
        }
        Err(WriteFailure::Db(e)) => {
            shop.metrics.flash_failed.fetch_add(1, Relaxed);
            return_stock(&shop, sku, 1).await;
            Err(e.into())
        }
    }
}

/// `GET /skus/{sku}/stock`: `{sku_id, stock, sold}` from the primary (hot SKUs: the hot
/// instance).
pub async fn stock(
    State(shop): State<AppState>,
    Path(sku): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = shop.db.get_conn().await?;
    let row: Option<(i64, i64)> = conn
        .query_first(format!(
            "/* peakgate: route=primary */ SELECT stock, sold FROM sku_stock WHERE sku_id = {sku}"
        ))
        .await?;
    let (stock, sold) = row.ok_or_else(|| ApiError::NotFound(format!("no SKU {sku}")))?;
    Ok(Json(json!({ "sku_id": sku, "stock": stock, "sold": sold })))
}

#[derive(Deserialize)]
pub struct Restock {
    stock: i64,
}

/// `PUT /admin/skus/{sku}/stock {stock}`: sets the stock and resets `sold` (before a sale), and
/// writes the product's catalogue event.
pub async fn restock(
    State(shop): State<AppState>,
    Path(sku): Path<u64>,
    JsonBody(req): JsonBody<Restock>,
) -> Result<Json<Value>, ApiError> {
    if !(0..=10_000_000).contains(&req.stock) {
        return Err(ApiError::BadRequest("stock: 0 to 10000000".into()));
    }
    let mut conn = shop.db.get_conn().await?;
    conn.query_drop(format!(
        "UPDATE sku_stock SET stock = {}, sold = 0 WHERE sku_id = {sku}",
        req.stock
    ))
    .await?;
    let found: Option<i64> = conn
        .query_first(format!(
            "/* peakgate: route=primary */ SELECT stock FROM sku_stock WHERE sku_id = {sku}"
        ))
        .await?;
    found.ok_or_else(|| ApiError::NotFound(format!("no SKU {sku}")))?;
    // Search shows whether the product is in stock.
    product_events::change_product(&shop.db, sku, None, "stock").await?;
    Ok(Json(
        json!({ "sku_id": sku, "stock": req.stock, "sold": 0 }),
    ))
}

/// `GET /admin/skus/{sku}/sales`: order lines and units of the SKU over every shard.
pub async fn sales(
    State(shop): State<AppState>,
    Path(sku): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = shop.db.get_conn().await?;
    let row: Option<(i64, Option<i64>)> = conn
        .query_first(format!(
            "SELECT COUNT(*), SUM(quantity) FROM order_items WHERE sku_id = {sku}"
        ))
        .await?;
    let (lines, units) = row.unwrap_or((0, None));
    Ok(Json(
        json!({ "sku_id": sku, "order_lines": lines, "units": units.unwrap_or(0) }),
    ))
}
