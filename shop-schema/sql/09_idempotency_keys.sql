-- The first answer to a request carrying an Idempotency-Key, replayed for its retries.
-- Carries member_id (keys are per member); in the shop's map it is sharded by member_id.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  member_id     BIGINT UNSIGNED NOT NULL,
  idem_key      VARCHAR(64)     NOT NULL,
  request_hash  CHAR(64)        NOT NULL,
  order_id      BIGINT UNSIGNED NULL,
  http_status   SMALLINT        NOT NULL,
  response      TEXT            NOT NULL,
  created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  expires_at    DATETIME(3)     NOT NULL,
  PRIMARY KEY (member_id, idem_key),
  KEY idx_idempotency_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
