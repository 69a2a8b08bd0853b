//! The MySQL side: a mysql_async pool to PeakGate and SQL literal helpers.
//!
//! The proxy generates order ids only for text INSERTs and merges reads over several shards only
//! for text queries (prepared statements that need either are refused), so the shop sends text
//! and escapes every value with [`lit`]; the escaping is mysql_common's own.

use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts, Value};

/// A MySQL error code, when the error is a server (or proxy) ERR packet.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// ER_DUP_ENTRY.
pub const ER_DUP_ENTRY: u16 = 1062;

/// A value as an SQL literal: numbers as digits, strings quoted and escaped, `None` as NULL.
pub fn lit<T: Into<Value>>(v: T) -> String {
    v.into().as_sql(false)
}

/// A pool to the proxy. `url` is `mysql://user:pass@host:port/db`; `max` caps connections.
///
/// `prefer_socket` is off: with it, mysql_async asks the server for `@@socket` and would connect
/// to the MariaDB behind the proxy directly when it runs on the same machine.
pub fn pool(url: &str, max: usize) -> anyhow::Result<Pool> {
    let opts = mysql_async::Opts::from_url(url)?;
    let constraints = PoolConstraints::new(1, max.max(1))
        .ok_or_else(|| anyhow::anyhow!("bad pool size {max}"))?;
    let builder = OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .pool_opts(PoolOpts::default().with_constraints(constraints));
    Ok(Pool::new(builder))
}

#[cfg(test)]
mod tests {
    use super::lit;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit(42i64), "42");
        assert_eq!(lit("it's"), "'it\\'s'");
        assert_eq!(lit(None::<i64>), "NULL");
        assert_eq!(lit("鞋子"), "'鞋子'");
    }
}
