-- Orders, sharded by member_id. id has no AUTO_INCREMENT: the proxy generates it when an INSERT
-- leaves it out (its low 10 bits carry the member's shard slot, so WHERE id = ? finds one shard)
-- and returns it as LAST_INSERT_ID(). (member_id, idempotency_key) is unique: a retried checkout
-- can never write a second order, whatever happened to its idempotency_keys row.
CREATE TABLE IF NOT EXISTS orders (
  id               BIGINT UNSIGNED NOT NULL,
  member_id        BIGINT UNSIGNED NOT NULL,
  status           ENUM('pending','paid','cancelled','shipped','completed') NOT NULL DEFAULT 'pending',
  kind             ENUM('normal','flash_sale') NOT NULL DEFAULT 'normal',
  item_count       INT             NOT NULL,
  total            DECIMAL(12,2)   NOT NULL,
  currency         CHAR(3)         NOT NULL DEFAULT 'CNY',
  idempotency_key  VARCHAR(64)     NULL,
  created_at       DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  paid_at          DATETIME(3)     NULL,
  updated_at       DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (id),
  UNIQUE KEY uk_orders_member_idem (member_id, idempotency_key),
  KEY idx_orders_member_created (member_id, created_at),
  KEY idx_orders_status_created (status, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
