//! `batch_mode = "merged"`: k identical guarded decrements of one row as ONE arithmetic UPDATE
//! whose total is split exactly among them. For `UPDATE t SET stock = stock - N WHERE key = K AND
//! stock >= G` sent by k clients, the server runs
//!
//! ```sql
//! SET @pg_m = 0;
//! UPDATE t SET stock = stock - N * (@pg_m := LEAST(k, (`stock` - G) DIV N + 1)) WHERE key = K AND stock >= G;
//! INSERT INTO peakgate.hot_batches (id, counts) VALUES (<id>, IF(ROW_COUNT() = (@pg_m > 0), CONCAT(@pg_m, '/', k), NULL));
//! SELECT @pg_m; SET @pg_m = NULL
//! ```
//!
//! between the batch's BEGIN and COMMIT. `m = @pg_m` is how many of the k decrements, run one
//! after another in queue order, would have found enough stock: the i-th (from 1) needs
//! `stock - (i-1)N >= G`, so `m = min(k, floor((stock - G) / N) + 1)` when the row qualifies at
//! all, else the UPDATE matches nothing and m stays 0. For `stock > G` the i-th needs
//! `(i-1)N < stock - G`, so `m = min(k, ceil((stock - G) / N))`, written with `DIV` and `MOD`
//! (exact for integer and DECIMAL columns, where `/` would round). The first m clients get 1
//! affected row, the rest 0: what running them one by one gives, in one row change.
//!
//! The other `x = x + M` / `x = x - M` assignments of the statement are multiplied by m too. The
//! first assignment in the text computes m (MariaDB evaluates a single-table UPDATE's assignments
//! left to right, so the later ones read it, and the first one reads the stock before any
//! assignment changed it). The marker holds `m/k`; it is written only when the UPDATE changed
//! exactly the rows m says (one, or none when m = 0): if the key matched several rows the
//! arithmetic would not be each client's, so the NULL makes the INSERT fail, the batch rolls back
//! and its statements run alone. `@pg_m` is cleared before COMMIT so that nobody else who gets
//! this pooled connection sees it.

use std::ops::Range;

use crate::backend::conn::Reply;
use crate::protocol::response::ErrPacket;

/// A guarded decrement as identical copies of it can be merged (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeShape {
    /// The stock column, as configured.
    pub stock: String,
    /// The stock each statement takes (N > 0).
    pub amount: i64,
    /// The guard's value G: `stock >= G`, or `stock > G` when `strict`.
    pub guard: i64,
    pub strict: bool,
    /// Byte ranges in the statement's text of every assignment's amount literal (integers), in
    /// text order.
    pub amounts: Vec<Range<usize>>,
}

/// Clears the body's variable (the body's last statement; also after a rollback).
pub const CLEAR: &str = "SET @pg_m = NULL";

/// Statements the merged body adds between BEGIN and COMMIT (see [`body`]).
pub const BODY_STATEMENTS: usize = 5;

/// Index, among the body's results, of the `SELECT @pg_m`.
const SELECT_AT: usize = 3;

/// The statements between BEGIN and COMMIT that run `k` copies of `sql` (whose shape is `shape`)
/// as one UPDATE, with marker `id`; each starts with `"; "`.
pub fn body(sql: &str, shape: &MergeShape, k: usize, id: u64) -> String {
    format!(
        "; SET @pg_m = 0; {}; INSERT INTO peakgate.hot_batches (id, counts) VALUES ({id}, \
         IF(ROW_COUNT() = (@pg_m > 0), CONCAT(@pg_m, '/', {k}), NULL)); SELECT @pg_m; {CLEAR}",
        update(sql, shape, k)
    )
}

/// The merged UPDATE: `sql` with every amount multiplied by m, the first computing it.
fn update(sql: &str, shape: &MergeShape, k: usize) -> String {
    let stock = format!("`{}`", shape.stock.replace('`', "``"));
    let (n, g) = (shape.amount, shape.guard);
    let count = if shape.strict {
        format!("({stock} - {g}) DIV {n} + (({stock} - {g}) MOD {n} > 0)")
    } else {
        format!("({stock} - {g}) DIV {n} + 1")
    };
    let mut out = String::with_capacity(sql.len() + count.len() + 64);
    let mut at = 0;
    for (i, r) in shape.amounts.iter().enumerate() {
        out.push_str(&sql[at..r.end]);
        if i == 0 {
            out.push_str(&format!(" * (@pg_m := LEAST({k}, {count}))"));
        } else {
            out.push_str(" * @pg_m");
        }
        at = r.end;
    }
    out.push_str(&sql[at..]);
    out
}

/// Each client's affected rows from the body's results (those after BEGIN, up to COMMIT): the
/// first m get 1, the rest 0. `None` when the answer is not what the body sends back.
pub fn counts(body: &[Result<Reply, ErrPacket>], k: usize) -> Option<Vec<u64>> {
    let Some(Ok(Reply::Rows { rows, .. })) = body.get(SELECT_AT) else {
        return None;
    };
    let cell = rows.first()?.first()?.as_deref()?;
    let m: usize = std::str::from_utf8(cell).ok()?.trim().parse().ok()?;
    split(m, k)
}

/// A marker's `m/k` as each client's affected rows (`None`: not a merged marker of k).
pub fn marker_counts(marker: &str, k: usize) -> Option<Vec<u64>> {
    let (m, of) = marker.split_once('/')?;
    if of.trim().parse::<usize>().ok()? != k {
        return None;
    }
    split(m.trim().parse().ok()?, k)
}

fn split(m: usize, k: usize) -> Option<Vec<u64>> {
    (m <= k).then(|| (0..k).map(|i| u64::from(i < m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UPDATE's count of successes in Rust, with SQL's DIV and MOD (truncating; the
    /// dividend is never negative where the row qualifies), and 0 where it does not.
    fn merged(stock: i64, shape: &MergeShape, k: i64) -> i64 {
        let (n, g) = (shape.amount, shape.guard);
        let qualifies = if shape.strict { stock > g } else { stock >= g };
        if !qualifies {
            return 0;
        }
        let count = if shape.strict {
            (stock - g) / n + i64::from((stock - g) % n > 0)
        } else {
            (stock - g) / n + 1
        };
        k.min(count)
    }

    /// The same k statements one after another: how many changed the row, and the stock after.
    fn one_by_one(mut stock: i64, shape: &MergeShape, k: i64) -> (i64, i64) {
        let mut ok = 0;
        for _ in 0..k {
            let qualifies = if shape.strict {
                stock > shape.guard
            } else {
                stock >= shape.guard
            };
            if qualifies {
                stock -= shape.amount;
                ok += 1;
            }
        }
        (ok, stock)
    }

    fn shape(amount: i64, guard: i64, strict: bool) -> MergeShape {
        MergeShape {
            stock: "stock".into(),
            amount,
            guard,
            strict,
            amounts: Vec::new(),
        }
    }

    #[test]
    fn the_split_is_what_running_them_one_by_one_gives() {
        for strict in [false, true] {
            for amount in 1..=7 {
                for guard in -3..=12 {
                    for stock in -5..=60 {
                        for k in 1..=20 {
                            let s = shape(amount, guard, strict);
                            let m = merged(stock, &s, k);
                            let (ok, after) = one_by_one(stock, &s, k);
                            assert_eq!(
                                (m, stock - amount * m),
                                (ok, after),
                                "stock {stock}, {k} x (- {amount} if stock {} {guard})",
                                if strict { ">" } else { ">=" }
                            );
                        }
                    }
                }
            }
        }
    }

    /// The byte range of `lit` in `sql`, searching from `from`.
    fn at(sql: &str, lit: &str, from: usize) -> Range<usize> {
        let p = sql[from..].find(lit).expect("literal") + from;
        p..p + lit.len()
    }

    #[test]
    fn the_update_multiplies_every_amount_and_computes_m_once() {
        let sql = "UPDATE shop.sku_stock SET sold = sold + 2, stock=stock-2 WHERE sku_id = 5 AND stock >= 2";
        let s = MergeShape {
            stock: "stock".into(),
            amount: 2,
            guard: 2,
            strict: false,
            amounts: vec![at(sql, "2", 0), at(sql, "2", 41)],
        };
        assert_eq!(
            update(sql, &s, 16),
            "UPDATE shop.sku_stock SET sold = sold + 2 * (@pg_m := LEAST(16, (`stock` - 2) DIV 2 + 1)), \
             stock=stock-2 * @pg_m WHERE sku_id = 5 AND stock >= 2"
        );
        let sql = "UPDATE t SET stock = stock - 3 WHERE sku_id = 1 AND stock > -1";
        let strict = MergeShape {
            amount: 3,
            guard: -1,
            strict: true,
            amounts: vec![at(sql, "3", 0)],
            ..s
        };
        assert_eq!(
            update(sql, &strict, 4),
            "UPDATE t SET stock = stock - 3 * (@pg_m := LEAST(4, (`stock` - -1) DIV 3 + \
             ((`stock` - -1) MOD 3 > 0))) WHERE sku_id = 1 AND stock > -1"
        );
    }

    #[test]
    fn markers_give_each_client_its_count() {
        assert_eq!(marker_counts("2/4", 4), Some(vec![1, 1, 0, 0]));
        assert_eq!(marker_counts("0/3", 3), Some(vec![0, 0, 0]));
        assert_eq!(marker_counts("3/3", 3), Some(vec![1, 1, 1]));
        assert_eq!(marker_counts("3/3", 4), None, "another batch size");
        assert_eq!(marker_counts("5/3", 3), None, "more than the batch");
        assert_eq!(marker_counts("1,0,1", 3), None, "a statements marker");
    }
}
