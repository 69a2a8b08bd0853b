//! The catalogue: product listing (with a title filter), product detail (both cache-aside in
//! Redis), and the back-office price change that invalidates them and writes a catalogue event.
//! Full-text search is `GET /search` ([`super::search`]), on the search index.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{hex, page_view};
use super::product_events;
use super::{ApiError, AppState, JsonBody, Shop};
use crate::cache::Lookup;
use crate::db::lit;
use crate::money::Money;

/// After a price change the keys are deleted again this much later: a miss in between may have
/// loaded the old price from a replica that had not applied the change yet.
const SECOND_INVALIDATION: Duration = Duration::from_secs(1);

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub category_id: u32,
    pub title: String,
    pub title_en: String,
    pub brand: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub price: String,
    pub list_price: String,
    pub is_flash_sale: bool,
}

type ProductRow = (u64, u32, String, String, String, String, String, u8);
type DetailRow = (u64, u32, String, String, String, String, String, u8, String);

fn product(r: ProductRow, description: Option<String>) -> Product {
    Product {
        id: r.0,
        category_id: r.1,
        title: r.2,
        title_en: r.3,
        brand: r.4,
        description,
        price: r.5,
        list_price: r.6,
        is_flash_sale: r.7 != 0,
    }
}

const COLUMNS: &str = "id, category_id, title, title_en, brand, price, list_price, is_flash_sale";

/// Loads an active product from the database (a replica, through the proxy).
pub async fn load_product(shop: &Shop, id: u64) -> Result<Option<Product>, ApiError> {
    let mut conn = shop.db.get_conn().await?;
    let row: Option<DetailRow> = conn
        .query_first(format!(
            "SELECT {COLUMNS}, description FROM products WHERE id = {id} AND status = 'active'"
        ))
        .await?;
    Ok(row.map(|r| product((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7), Some(r.8))))
}

/// A product through the cache.
pub async fn cached_product(shop: &Shop, id: u64) -> Result<(Option<Product>, Lookup), ApiError> {
    let (text, how) = shop
        .cache
        .get_or_load(&shop.metrics, &format!("product:{id}"), || async {
            let p = load_product(shop, id).await?;
            p.map(|p| serde_json::to_string(&p))
                .transpose()
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await?;
    let p = text
        .map(|t| serde_json::from_str::<Product>(&t))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("cached product {id}: {e}")))?;
    Ok((p, how))
}

fn with_cache_header(body: Value, how: Lookup) -> Response {
    let v = match how {
        Lookup::Hit => "hit",
        Lookup::Loaded => "miss",
        Lookup::Coalesced => "coalesced",
    };
    ([("x-cache", v)], Json(body)).into_response()
}

/// `GET /products/{id}`: the product, `x-cache: hit|miss|coalesced`.
pub async fn detail(
    State(shop): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("product id {id:?} is not a number")))?;
    page_view(&shop, &headers).await;
    let (p, how) = cached_product(&shop, id).await?;
    let p = p.ok_or_else(|| ApiError::NotFound(format!("no product {id}")))?;
    Ok(with_cache_header(json!(p), how))
}

#[derive(Deserialize)]
pub struct ListQuery {
    category: Option<u32>,
    q: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

/// `GET /products?category=&q=&page=&per_page=`: a page of active products by id.
pub async fn list(
    State(shop): State<AppState>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page = q.page.unwrap_or(1);
    let per_page = q.per_page.unwrap_or(20);
    if page == 0 || page > 500 {
        return Err(ApiError::BadRequest("page: 1 to 500".into()));
    }
    if per_page == 0 || per_page > 50 {
        return Err(ApiError::BadRequest("per_page: 1 to 50".into()));
    }
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 64) {
        return Err(ApiError::BadRequest("q: at most 64 characters".into()));
    }
    page_view(&shop, &headers).await;
    let version = shop.cache.catalog_version(&shop.metrics).await;
    let search_key = search.map_or_else(String::new, |s| {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(s.as_bytes())[..8])
    });
    let what = format!(
        "list:v{version}:c{}:q{search_key}:p{page}:n{per_page}",
        q.category.unwrap_or(0)
    );
    let (text, how) = shop
        .cache
        .get_or_load(&shop.metrics, &what, || async {
            let mut filter = String::from("status = 'active'");
            if let Some(c) = q.category {
                filter.push_str(&format!(" AND category_id = {c}"));
            }
            if let Some(s) = search {
                let pattern = format!(
                    "%{}%",
                    s.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                filter.push_str(&format!(
                    " AND (title LIKE {p} OR title_en LIKE {p})",
                    p = lit(pattern)
                ));
            }
            let offset = (page - 1) * per_page;
            let mut conn = shop.db.get_conn().await?;
            let rows: Vec<ProductRow> = conn
                .query(format!(
                    "SELECT {COLUMNS} FROM products WHERE {filter} ORDER BY id \
                     LIMIT {per_page} OFFSET {offset}"
                ))
                .await?;
            let items: Vec<Product> = rows.into_iter().map(|r| product(r, None)).collect();
            Ok::<_, ApiError>(Some(
                json!({ "page": page, "per_page": per_page, "items": items }).to_string(),
            ))
        })
        .await?;
    let body: Value = text
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("cached listing: {e}")))?
        .unwrap_or(Value::Null);
    Ok(with_cache_header(body, how))
}

#[derive(Deserialize)]
pub struct PriceChange {
    price: String,
}

/// `PUT /admin/products/{id}/price {price}`: changes the price (with its catalogue event) and
/// invalidates the cache.
pub async fn set_price(
    State(shop): State<AppState>,
    Path(id): Path<u64>,
    JsonBody(req): JsonBody<PriceChange>,
) -> Result<Json<Value>, ApiError> {
    let price = Money::parse(&req.price)
        .filter(|m| m.0 > 0 && m.0 < 10_000_000_000)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "price {:?}: a positive amount like \"19.90\"",
                req.price
            ))
        })?;
    // The price, its version and its catalogue event (for search) in one transaction.
    let changed =
        product_events::change_product(&shop.db, id, Some(&format!("price = {price}")), "price")
            .await?;
    if changed.is_none() {
        return Err(ApiError::NotFound(format!("no product {id}")));
    }
    invalidate_product(&shop, id).await;
    let later = shop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(SECOND_INVALIDATION).await;
        invalidate_product(&later, id).await;
    });
    Ok(Json(json!({ "id": id, "price": price.to_string() })))
}

async fn invalidate_product(shop: &Shop, id: u64) {
    shop.cache
        .invalidate(&shop.metrics, &[format!("product:{id}")])
        .await;
    shop.cache.bump_catalog_version(&shop.metrics).await;
}
