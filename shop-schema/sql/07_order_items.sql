-- Order lines, bound to orders by order_id (which carries the member's shard bits). member_id is
-- kept for reports; routing uses order_id.
CREATE TABLE IF NOT EXISTS order_items (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  order_id    BIGINT UNSIGNED NOT NULL,
  member_id   BIGINT UNSIGNED NOT NULL,
  sku_id      BIGINT UNSIGNED NOT NULL,
  title       VARCHAR(255)    NOT NULL,
  unit_price  DECIMAL(12,2)   NOT NULL,
  quantity    INT             NOT NULL,
  line_total  DECIMAL(12,2)   NOT NULL,
  PRIMARY KEY (id),
  KEY idx_order_items_order (order_id),
  KEY idx_order_items_sku (sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
