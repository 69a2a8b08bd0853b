-- The back-office database: its own schema, in its own MariaDB database, fed by the outbox events
-- (`peakgate-shop backoffice`). Nothing here is read or written by checkout.
--
-- applied_events: one row per event applied, written in the same transaction as the event's
-- effect, so a redelivered event finds its id and changes nothing. lag_ms is the pipeline lag
-- of that event: outbox created_at (the member's shard) to this commit.
CREATE TABLE IF NOT EXISTS applied_events (
  event_id      VARCHAR(64)     NOT NULL,
  event_type    VARCHAR(64)     NOT NULL,
  aggregate_id  BIGINT UNSIGNED NOT NULL,
  stream_seq    BIGINT UNSIGNED NOT NULL,
  deliveries    INT             NOT NULL,
  created_at    DATETIME(3)     NOT NULL,
  applied_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  lag_ms        BIGINT          NOT NULL,
  PRIMARY KEY (event_id),
  KEY idx_applied_events_applied (applied_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per order, whatever order its events arrive in: order.created fills the order's
-- facts, order.paid the payment; a paid order stays paid. events_applied counts the events
-- applied to the row (1 created, 2 created + paid): exactly-once in effect can be checked.
CREATE TABLE IF NOT EXISTS bo_orders (
  order_id        BIGINT UNSIGNED NOT NULL,
  member_id       BIGINT UNSIGNED NOT NULL,
  status          VARCHAR(16)     NOT NULL,
  kind            VARCHAR(16)     NULL,
  item_count      INT             NULL,
  total           DECIMAL(12,2)   NULL,
  paid_amount     DECIMAL(12,2)   NULL,
  payment_method  VARCHAR(32)     NULL,
  ordered_at      DATETIME(3)     NULL,
  paid_at         DATETIME(3)     NULL,
  events_applied  INT             NOT NULL DEFAULT 0,
  updated_at      DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (order_id),
  KEY idx_bo_orders_member (member_id),
  KEY idx_bo_orders_status_ordered (status, ordered_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The lines of each order (from order.created), for sales reports by SKU.
CREATE TABLE IF NOT EXISTS bo_order_items (
  order_id    BIGINT UNSIGNED NOT NULL,
  line_no     INT             NOT NULL,
  sku_id      BIGINT UNSIGNED NOT NULL,
  title       VARCHAR(255)    NOT NULL,
  unit_price  DECIMAL(12,2)   NOT NULL,
  quantity    INT             NOT NULL,
  line_total  DECIMAL(12,2)   NOT NULL,
  PRIMARY KEY (order_id, line_no),
  KEY idx_bo_order_items_sku (sku_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
