//! `GET /search?q=&category=&min_price=&max_price=&in_stock=&sort=&page=&per_page=`: product
//! search on this instance's index replica ([`crate::search::query`]). No SQL on this path: the
//! index is kept in sync by the index consumer, so search load never reaches the database.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;

use super::auth::page_view;
use super::{ApiError, AppState};
use crate::search::query::{self, SearchParams, SearchRequest, SearchResults};

/// `GET /search`: hits, total, category facets, highlighted titles. 400 on a bad parameter, 503
/// when this instance has no index.
pub async fn search(
    State(shop): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let index = shop.search.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "search is not enabled on this instance (serve --search-index DIR)".into(),
        )
    })?;
    let request = SearchRequest::parse(&params).map_err(ApiError::BadRequest)?;
    page_view(&shop, &headers).await;
    let results = tokio::task::spawn_blocking(move || query::search(&index, &request))
        .await
        .map_err(|e| ApiError::Internal(format!("search task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("search: {e}")))?;
    Ok(Json(results))
}
