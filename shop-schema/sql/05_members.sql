-- Member profiles, sharded by member_id (consistent_hash over every shard).
CREATE TABLE IF NOT EXISTS members (
  member_id     BIGINT UNSIGNED NOT NULL,
  email         VARCHAR(191)    NOT NULL,
  display_name  VARCHAR(64)     NOT NULL,
  tier          ENUM('basic','silver','gold','platinum') NOT NULL DEFAULT 'basic',
  phone         VARCHAR(32)     NULL,
  country       CHAR(2)         NOT NULL DEFAULT 'CN',
  created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (member_id),
  KEY idx_members_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
