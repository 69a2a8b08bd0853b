-- Login lookup: email -> member_id. Not in the shard map (default shard): members are sharded by
-- member_id, so a login by email would otherwise ask every shard, and a UNIQUE email index could
-- not span shards. Its AUTO_INCREMENT also hands out member ids.
CREATE TABLE IF NOT EXISTS member_logins (
  member_id      BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  email          VARCHAR(191)    NOT NULL,
  password_salt  CHAR(32)        NOT NULL,
  password_hash  CHAR(64)        NOT NULL,
  created_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (member_id),
  UNIQUE KEY uk_member_logins_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
