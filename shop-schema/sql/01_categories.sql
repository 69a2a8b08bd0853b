-- Product categories: a small tree, read on every listing page. Broadcast in the shard map:
-- every shard holds a copy, so joins with sharded tables never leave their shard.
CREATE TABLE IF NOT EXISTS categories (
  id          INT UNSIGNED NOT NULL,
  parent_id   INT UNSIGNED NULL,
  slug        VARCHAR(64)  NOT NULL,
  name        VARCHAR(128) NOT NULL,
  sort_order  INT          NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY uk_categories_slug (slug),
  KEY idx_categories_parent (parent_id, sort_order)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
