-- The catalogue. Global table (default shard only); reads are served from replicas and, in the
-- service, from Redis (cache-aside). One SKU per product: sku_stock.sku_id = products.id.
-- version: bumped by every change that writes a catalogue event (catalog_outbox); a search index
-- keeps the highest version it has seen of each product.
CREATE TABLE IF NOT EXISTS products (
  id            BIGINT UNSIGNED NOT NULL,
  category_id   INT UNSIGNED    NOT NULL,
  title         VARCHAR(255)    NOT NULL,
  title_en      VARCHAR(255)    NOT NULL,
  brand         VARCHAR(64)     NOT NULL,
  description   TEXT            NOT NULL,
  price         DECIMAL(12,2)   NOT NULL,
  list_price    DECIMAL(12,2)   NOT NULL,
  is_flash_sale TINYINT(1)      NOT NULL DEFAULT 0,
  status        ENUM('active','hidden','discontinued') NOT NULL DEFAULT 'active',
  version       BIGINT UNSIGNED NOT NULL DEFAULT 1,
  created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  KEY idx_products_category (category_id, status, id),
  KEY idx_products_updated (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
