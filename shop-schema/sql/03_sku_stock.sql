-- Sellable stock per SKU. Not in the shard map: normal SKUs live on the default shard; the
-- proxy's [hotspot] section puts the rows of flash-sale SKUs (1001-1010) on the hot instance,
-- and DDL on this table reaches both. Purchases decrement with a guarded UPDATE
-- (stock = stock - n WHERE stock >= n), never from a cached value.
CREATE TABLE IF NOT EXISTS sku_stock (
  sku_id      BIGINT UNSIGNED NOT NULL,
  product_id  BIGINT UNSIGNED NOT NULL,
  stock       INT             NOT NULL,
  sold        INT             NOT NULL DEFAULT 0,
  updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (sku_id),
  KEY idx_sku_stock_product (product_id),
  CONSTRAINT chk_sku_stock_non_negative CHECK (stock >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
