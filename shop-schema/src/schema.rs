//! The shop's DDL (`shop-schema/sql/*.sql`, embedded at build time) and `migrate`, which applies
//! it through the proxy: the proxy sends DDL on sharded and broadcast tables to every shard, on
//! `sku_stock` to its home shard and the hot instance, and the rest to the default shard.

use mysql_async::prelude::Queryable;

/// The DDL files in the order they are applied.
pub const FILES: &[(&str, &str)] = &[
    (
        "01_categories.sql",
        include_str!("../sql/01_categories.sql"),
    ),
    ("02_products.sql", include_str!("../sql/02_products.sql")),
    ("03_sku_stock.sql", include_str!("../sql/03_sku_stock.sql")),
    (
        "04_member_logins.sql",
        include_str!("../sql/04_member_logins.sql"),
    ),
    ("05_members.sql", include_str!("../sql/05_members.sql")),
    ("06_orders.sql", include_str!("../sql/06_orders.sql")),
    (
        "07_order_items.sql",
        include_str!("../sql/07_order_items.sql"),
    ),
    ("08_payments.sql", include_str!("../sql/08_payments.sql")),
    (
        "09_idempotency_keys.sql",
        include_str!("../sql/09_idempotency_keys.sql"),
    ),
    ("10_outbox.sql", include_str!("../sql/10_outbox.sql")),
    (
        "11_catalog_outbox.sql",
        include_str!("../sql/11_catalog_outbox.sql"),
    ),
];

/// Changes for databases migrated by an earlier shop (the files above describe the tables as
/// they are now; `CREATE TABLE IF NOT EXISTS` leaves an older table as it was): a query that
/// counts what is there, and the statement that adds it when the count is 0. (Older proxies
/// refused MariaDB's `ADD COLUMN IF NOT EXISTS` on a mapped table, which their parser could not
/// read; this way works with every version.)
pub const UPGRADES: &[(&str, &str)] = &[(
    "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
     AND TABLE_NAME = 'products' AND COLUMN_NAME = 'version'",
    "ALTER TABLE products ADD COLUMN version BIGINT UNSIGNED NOT NULL DEFAULT 1 AFTER status",
)];

/// The statements of one file: `--` comment lines dropped, split on `;`.
pub fn statements(text: &str) -> Vec<String> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The database named by a `mysql://` URL (`shop` when it names none).
pub fn database_of(url: &str) -> anyhow::Result<String> {
    let opts = mysql_async::Opts::from_url(url)?;
    Ok(opts.db_name().unwrap_or("shop").to_string())
}

/// Creates the database (on every shard) and every table, through the proxy at `url`.
/// Idempotent: every statement is `IF NOT EXISTS`.
///
/// `hot_url`: a direct connection to the hot instance, used for one statement, `CREATE DATABASE`:
/// the proxy sends CREATE DATABASE to every shard but not (yet) to the hot instance, while it does
/// send the `sku_stock` DDL there, which then fails with "unknown database".
pub async fn migrate(
    url: &str,
    hot_url: Option<&str>,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<()> {
    let db = database_of(url)?;
    anyhow::ensure!(
        db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {db:?}: use letters, digits and _"
    );
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
        .db_name(None::<String>)
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .await?;
    conn.query_drop(format!("USE `{db}`")).await?;
    if let Some(hot) = hot_url {
        let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(hot)?)
            .db_name(None::<String>)
            .prefer_socket(false);
        let mut h = mysql_async::Conn::new(opts).await?;
        h.query_drop(format!(
            "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .await?;
        h.disconnect().await?;
    }
    for (name, text) in FILES {
        for sql in statements(text) {
            conn.query_drop(&sql).await.map_err(|e| {
                let hint = if *name == "03_sku_stock.sql" && hot_url.is_none() {
                    " (the hot instance needs the database: pass --hot-url)"
                } else {
                    ""
                };
                anyhow::anyhow!("{name}: {e}{hint}")
            })?;
        }
        progress(name);
    }
    upgrade(&mut conn, &mut progress).await?;
    conn.disconnect().await?;
    Ok(())
}

/// Applies the [`UPGRADES`] a database lacks, through `conn` (database selected); tells
/// `progress` each statement run.
pub async fn upgrade(
    conn: &mut mysql_async::Conn,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<()> {
    for (check, alter) in UPGRADES {
        let present: Option<i64> = conn.query_first(*check).await?;
        if present == Some(0) {
            conn.query_drop(*alter)
                .await
                .map_err(|e| anyhow::anyhow!("{alter}: {e}"))?;
            progress(alter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_one_create_table() {
        for (name, text) in FILES {
            let s = statements(text);
            assert_eq!(s.len(), 1, "{name}: {s:?}");
            assert!(s[0].starts_with("CREATE TABLE IF NOT EXISTS"), "{name}");
        }
    }

    #[test]
    fn database_comes_from_the_url() -> anyhow::Result<()> {
        assert_eq!(
            database_of("mysql://shop:shop@127.0.0.1:6033/shop_x")?,
            "shop_x"
        );
        assert_eq!(database_of("mysql://shop:shop@127.0.0.1:6033")?, "shop");
        Ok(())
    }
}
