-- Transactional outbox: written in the same transaction as the order it describes, so it must
-- live on the member's shard (sharded by member_id in the shop's map). A relay publishes
-- unpublished rows and stamps published_at.
CREATE TABLE IF NOT EXISTS outbox (
  id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  member_id       BIGINT UNSIGNED NOT NULL,
  aggregate_type  VARCHAR(32)     NOT NULL,
  aggregate_id    BIGINT UNSIGNED NOT NULL,
  event_type      VARCHAR(64)     NOT NULL,
  payload         TEXT            NOT NULL,
  created_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  published_at    DATETIME(3)     NULL,
  PRIMARY KEY (id),
  KEY idx_outbox_unpublished (published_at, id),
  KEY idx_outbox_member (member_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
