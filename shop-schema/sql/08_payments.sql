-- One payment per order (order_id is the key, so a retried payment cannot capture twice).
-- Carries member_id: in the shop's map it is sharded by member_id and lives beside its order.
CREATE TABLE IF NOT EXISTS payments (
  order_id      BIGINT UNSIGNED NOT NULL,
  member_id     BIGINT UNSIGNED NOT NULL,
  amount        DECIMAL(12,2)   NOT NULL,
  currency      CHAR(3)         NOT NULL DEFAULT 'CNY',
  method        ENUM('card','alipay','wechat','balance') NOT NULL,
  status        ENUM('captured','refunded','failed') NOT NULL DEFAULT 'captured',
  provider_ref  VARCHAR(64)     NOT NULL,
  created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (order_id),
  KEY idx_payments_member (member_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
