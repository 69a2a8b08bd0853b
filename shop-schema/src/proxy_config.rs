//! A proxy config for the shop: a topology's `peakgate.toml` with its shard map (`[sharding]`,
//! `[[tables]]`) replaced by the shop's (`shop-schema/peakgate.toml`), optionally with the
//! tables moved to another database and the listeners moved, and read-your-writes across the
//! sessions of the shop's user.

/// The shop's shard map, as shipped in `shop-schema/peakgate.toml`.
pub const SHOP_MAP: &str = include_str!("../peakgate.toml");

/// What to change besides the map.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Database of the shop's tables (default `shop`): the map's and the hotspot's table names.
    pub database: Option<String>,
    /// `listen.mysql`.
    pub mysql: Option<String>,
    /// `listen.admin`.
    pub admin: Option<String>,
}

/// `topology` (a full proxy config) with the shop's map in place of its own.
pub fn merge(topology: &str, o: &Overrides) -> anyhow::Result<String> {
    let mut cfg: toml::Table = toml::from_str(topology)?;
    let mut map_text = SHOP_MAP.to_string();
    if let Some(db) = &o.database {
        map_text = map_text
            .replace("name = \"shop.", &format!("name = \"{db}."))
            .replace("binding = \"shop.", &format!("binding = \"{db}."));
        if let Some(toml::Value::Table(hot)) = cfg.get_mut("hotspot")
            && let Some(toml::Value::String(t)) = hot.get_mut("table")
            && let Some(rest) = t.strip_prefix("shop.")
        {
            *t = format!("{db}.{rest}");
        }
    }
    let map: toml::Table = toml::from_str(&map_text)?;
    cfg.remove("sharding");
    cfg.remove("tables");
    for (k, v) in map {
        cfg.insert(k, v);
    }
    // The shop is one client user with a connection pool: a write on one pooled connection and
    // the read after it on another must still see it (read-your-writes across the user's
    // sessions, docs/routing.md).
    if let Some(toml::Value::Table(routing)) = cfg.get_mut("routing") {
        routing
            .entry("read_your_writes_scope")
            .or_insert_with(|| toml::Value::String("user".into()));
    }
    if let Some(toml::Value::Table(listen)) = cfg.get_mut("listen") {
        if let Some(m) = &o.mysql {
            listen.insert("mysql".into(), toml::Value::String(m.clone()));
        }
        if let Some(a) = &o.admin {
            listen.insert("admin".into(), toml::Value::String(a.clone()));
        }
    }
    Ok(toml::to_string(&cfg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
[listen]
mysql = "127.0.0.1:6033"
admin = "127.0.0.1:6080"

[hotspot]
instance = "127.0.0.1:3331"
table = "shop.sku_stock"
key_column = "sku_id"
skus = [1001]

[sharding]
node_id = 3

[[tables]]
name = "shop.members"
shard_key = "member_id"
algorithm = "consistent_hash"
"#;

    #[test]
    fn replaces_the_map_and_moves_the_database() -> anyhow::Result<()> {
        let out = merge(
            TOPOLOGY,
            &Overrides {
                database: Some("it_shop_1".into()),
                mysql: Some("127.0.0.1:0".into()),
                admin: None,
            },
        )?;
        let t: toml::Table = toml::from_str(&out)?;
        let tables = t["tables"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(tables, 9, "{out}");
        assert!(out.contains("name = \"it_shop_1.catalog_outbox\""), "{out}");
        assert!(out.contains("name = \"it_shop_1.outbox\""), "{out}");
        assert!(out.contains("binding = \"it_shop_1.orders\""), "{out}");
        assert!(out.contains("table = \"it_shop_1.sku_stock\""), "{out}");
        assert!(out.contains("mysql = \"127.0.0.1:0\""), "{out}");
        assert!(out.contains("admin = \"127.0.0.1:6080\""), "{out}");
        assert_eq!(t["sharding"]["node_id"].as_integer(), Some(0));
        Ok(())
    }
}
