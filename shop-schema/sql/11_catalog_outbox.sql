-- Catalogue outbox: product changes that search must see (price, stock status), written in the
-- change's own transaction. It lives with `products` on the default shard (global in the shop's
-- map), so that transaction stays on one shard. The outbox relay publishes it to the same stream
-- as `outbox`; payload is the product's whole search document with its version.
CREATE TABLE IF NOT EXISTS catalog_outbox (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  aggregate_type  VARCHAR(32)     NOT NULL,
  aggregate_id    BIGINT UNSIGNED NOT NULL,
  event_type      VARCHAR(64)     NOT NULL,
  payload         TEXT            NOT NULL,
  created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  published_at    DATETIME(3)     NULL,
  PRIMARY KEY (id),
  KEY idx_catalog_outbox_unpublished (published_at, id),
  KEY idx_catalog_outbox_aggregate (aggregate_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
