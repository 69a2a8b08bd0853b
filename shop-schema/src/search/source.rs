//! The catalogue as search documents, read from the shop's database through the proxy: the
//! rebuild reads it page by page, and the service reads one product when it writes a catalogue
//! event. Never used by the search path.
//!
//! A document joins three places: `products` (the default shard), `categories` (broadcast: the
//! name, read once) and `sku_stock` (stock and units sold; the rows of flash-sale SKUs live on
//! the hot instance, and the proxy refuses a statement that names hot and normal SKUs together,
//! so they are read apart). Reads carry `route=primary`: a document must not be older than the
//! stream position it is stored with.

use std::collections::HashMap;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::ProductDoc;

/// Category id -> name.
pub type Categories = HashMap<u32, String>;

/// `id, category_id, title, title_en, brand, description, price, list_price, is_flash_sale,
/// status, version`.
pub type ProductRow = (
    u64,
    u32,
    String,
    String,
    String,
    String,
    String,
    String,
    u8,
    String,
    u64,
);

/// The columns of a [`ProductRow`].
pub const PRODUCT_COLUMNS: &str = "id, category_id, title, title_en, brand, description, \
     CAST(price AS CHAR), CAST(list_price AS CHAR), is_flash_sale, CAST(status AS CHAR), version";

/// Every category's name.
pub async fn categories(conn: &mut Conn) -> Result<Categories, mysql_async::Error> {
    let rows: Vec<(u32, String)> = conn.query("SELECT id, name FROM categories").await?;
    Ok(rows.into_iter().collect())
}

/// How many products there are (for the rebuild's progress bar).
pub async fn count_products(conn: &mut Conn) -> Result<u64, mysql_async::Error> {
    let n: Option<u64> = conn
        .query_first("/* peakgate: route=primary */ SELECT COUNT(*) FROM products")
        .await?;
    Ok(n.unwrap_or(0))
}

/// Up to `limit` products with ids above `after`, by id, from the primary.
pub async fn products_after(
    conn: &mut Conn,
    after: u64,
    limit: usize,
) -> Result<Vec<ProductRow>, mysql_async::Error> {
    conn.query(format!(
        "/* peakgate: route=primary */ SELECT {PRODUCT_COLUMNS} FROM products \
         WHERE id > {after} ORDER BY id LIMIT {limit}"
    ))
    .await
}

/// `(stock, sold)` of each SKU of `rows` that has a stock row. Flash-sale SKUs are read one by
/// one (their rows are on the hot instance), the others in one statement.
pub async fn stock_of(
    conn: &mut Conn,
    rows: &[ProductRow],
) -> Result<HashMap<u64, (i64, i64)>, mysql_async::Error> {
    let (flash, normal): (Vec<&ProductRow>, Vec<&ProductRow>) = rows.iter().partition(|r| r.8 != 0);
    let mut out = HashMap::with_capacity(rows.len());
    let normal: Vec<u64> = normal.iter().map(|r| r.0).collect();
    read_stock(conn, &normal, &mut out).await?;
    for r in flash {
        read_stock(conn, &[r.0], &mut out).await?;
    }
    Ok(out)
}

async fn read_stock(
    conn: &mut Conn,
    ids: &[u64],
    out: &mut HashMap<u64, (i64, i64)>,
) -> Result<(), mysql_async::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let got: Vec<(u64, i64, i64)> = conn
        .query(format!(
            "/* peakgate: route=primary */ SELECT sku_id, stock, sold FROM sku_stock \
             WHERE sku_id IN ({})",
            list.join(", ")
        ))
        .await?;
    out.extend(got.into_iter().map(|(id, stock, sold)| (id, (stock, sold))));
    Ok(())
}

/// The document of one product row.
pub fn to_doc(row: ProductRow, categories: &Categories, stock: Option<(i64, i64)>) -> ProductDoc {
    let (left, sold) = stock.unwrap_or((0, 0));
    ProductDoc {
        id: row.0,
        version: row.10,
        category_id: row.1,
        category: categories.get(&row.1).cloned().unwrap_or_default(),
        title: row.2,
        title_en: row.3,
        brand: row.4,
        description: row.5,
        price: row.6,
        list_price: row.7,
        is_flash_sale: row.8 != 0,
        active: row.9 == "active",
        in_stock: left > 0,
        popularity: sold.max(0) as u64,
    }
}

/// Up to `limit` documents with ids above `after` (the rebuild's page).
pub async fn docs_after(
    conn: &mut Conn,
    categories: &Categories,
    after: u64,
    limit: usize,
) -> Result<Vec<ProductDoc>, mysql_async::Error> {
    let rows = products_after(conn, after, limit).await?;
    let stock = stock_of(conn, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let s = stock.get(&r.0).copied();
            to_doc(r, categories, s)
        })
        .collect())
}
