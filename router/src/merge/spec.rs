//! [`merge_spec`]: a `SELECT`'s [`MergeSpec`] and the SQL its shards receive.
//!
//! sqlparser tells what the clauses mean; the crate's lexer tells where they are in the text
//! (sqlparser's spans do not cover every node's end). The shard SQL is the client's text with a
//! few edits: `AVG` renamed `SUM` in place, hidden columns inserted after the last select item,
//! and the HAVING / ORDER BY / LIMIT clauses removed or replaced. `spec/layout.rs` finds the
//! clauses in the text, `spec/expr.rs` reads aggregate calls and literals.

mod expr;
mod layout;

use std::ops::Range;

use sqlparser::ast::{
    self, BinaryOperator, Distinct, Expr, GroupByExpr, OrderByKind, OrderBySort, SelectItem,
    SetExpr, UnaryOperator, Value,
};

use super::{Aggregate, AggregateColumn, ColumnPos, Having, MergeError, MergeSpec, SortKey};
use crate::source::{self, ParseFailure, Source};
use expr::{
    Fn, aggregate_of, children, cmp_op, contains_aggregate, flip, item_expr, limit_of, literal,
    same_column,
};
use layout::{Layout, apply_edits};

/// Deepest HAVING condition converted (`AND`/`OR`/`NOT` nesting).
const MAX_HAVING_DEPTH: usize = 64;

/// Derives the [`MergeSpec`] of one `SELECT` (see the module doc of [`super`]).
pub fn merge_spec(sql: &str) -> Result<MergeSpec, MergeError> {
    let statement = source::parse_one(sql).map_err(|failure| match failure {
        ParseFailure::Parser(message) => MergeError::Unparseable(message),
        ParseFailure::Empty => MergeError::Unparseable("empty statement".into()),
        ParseFailure::Multi(n) => MergeError::Unparseable(format!("{n} statements")),
    })?;
    let ast::Statement::Query(query) = &statement else {
        return Err(MergeError::NotASelect);
    };
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        SetExpr::SetOperation { .. } => return Err(unsupported("set operations (UNION, ...)")),
        _ => return Err(MergeError::NotASelect),
    };
    if select.into.is_some() {
        return Err(unsupported("SELECT ... INTO"));
    }
    let src = Source::new(sql);
    let layout = Layout::find(&src, select)?;
    let mut builder = Builder::new(&select.projection)?;

    // Select items: aggregates, and AVG -> SUM in place.
    for (i, item) in select.projection.iter().enumerate() {
        let Some(expr) = item_expr(item) else {
            continue;
        };
        let Some(function) = aggregate_of(expr)? else {
            continue;
        };
        let column = builder.items[i]
            .pos
            .ok_or_else(|| unsupported("an aggregate between two `*`"))?;
        let function = match function {
            Fn::Avg(args) => {
                let name = layout.items[i].start;
                let starts_with_avg = sql
                    .get(name..name + 3)
                    .is_some_and(|w| w.eq_ignore_ascii_case("AVG"));
                if !starts_with_avg {
                    return Err(unsupported("an AVG item that does not start with AVG"));
                }
                builder.edits.push((name..name + 3, "SUM".into()));
                if !matches!(item, SelectItem::ExprWithAlias { .. }) {
                    let text = sql.get(layout.items[i].clone()).unwrap_or_default();
                    builder.renamed.push((column, text.to_owned()));
                }
                let count = builder.hidden_text(format!("COUNT{args}"))?;
                builder.aggregates.push(AggregateColumn {
                    column: count,
                    function: Aggregate::Count,
                });
                Aggregate::Avg { count }
            }
            Fn::Plain(function) => function,
        };
        builder
            .aggregates
            .push(AggregateColumn { column, function });
    }

    // GROUP BY.
    let mut group_by = Vec::new();
    match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(unsupported("GROUP BY modifiers (WITH ROLLUP)"));
            }
            for expr in exprs {
                group_by.push(builder.column_of(expr, true)?.0);
            }
        }
        GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
    }

    // ORDER BY.
    let mut order_by = Vec::new();
    if let Some(order) = &query.order_by {
        let OrderByKind::Expressions(items) = &order.kind else {
            return Err(unsupported("ORDER BY ALL"));
        };
        for item in items {
            let descending = match item.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(_) => return Err(unsupported("ORDER BY ... USING")),
            };
            let column = builder.column_of(&item.expr, true)?.0;
            order_by.push(SortKey {
                column,
                descending,
                nulls_first: item.options.nulls_first.unwrap_or(!descending),
            });
        }
    }

    // HAVING: applied after the merge when it needs the merged aggregates.
    let mut having = None;
    if let Some(condition) = &select.having
        && builder.uses_aggregates(condition)
    {
        having = Some(builder.having(condition, 0)?);
        if let Some(range) = &layout.having {
            builder.edits.push((range.clone(), " ".into()));
        }
    }

    let distinct = match &select.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => return Err(unsupported("DISTINCT ON")),
    };
    if distinct && builder.hidden_plain {
        return Err(unsupported(
            "DISTINCT with ORDER BY / GROUP BY / HAVING columns outside the select list",
        ));
    }

    let (limit, offset) = limit_of(query.limit_clause.as_ref())?;
    let grouped = !group_by.is_empty() || !builder.aggregates.is_empty();
    if grouped {
        // A shard cannot tell which of its groups make the global top n.
        for range in [&layout.order, &layout.limit].into_iter().flatten() {
            builder.edits.push((range.clone(), " ".into()));
        }
        if order_by.is_empty() {
            // MariaDB sorts a GROUP BY result by its groups when there is no ORDER BY.
            order_by = group_by
                .iter()
                .map(|&column| SortKey {
                    column,
                    descending: false,
                    nulls_first: true,
                })
                .collect();
        }
    } else if let (Some(limit), Some(range)) = (limit, &layout.limit) {
        let rows = limit.saturating_add(offset);
        builder
            .edits
            .push((range.clone(), format!("LIMIT {rows} ")));
    }

    if !builder.hidden.is_empty() {
        let columns: String = builder.hidden.iter().map(|h| format!(", {h}")).collect();
        builder
            .edits
            .push((layout.items_end..layout.items_end, columns));
    }
    let shard_sql = apply_edits(sql, builder.edits)?;
    Ok(MergeSpec {
        shard_sql,
        visible_columns: (!builder.has_wildcard).then_some(select.projection.len()),
        hidden_columns: builder.hidden.len(),
        order_by,
        group_by,
        aggregates: builder.aggregates,
        having,
        distinct,
        limit,
        offset,
        renamed: builder.renamed,
    })
}

fn unsupported(what: &str) -> MergeError {
    MergeError::Unsupported(what.to_owned())
}

/// A select item as the spec sees it.
struct Item<'q> {
    expr: Option<&'q Expr>,
    alias: Option<String>,
    /// `None` between two wildcards.
    pos: Option<ColumnPos>,
    aggregate: bool,
}

struct Builder<'q> {
    items: Vec<Item<'q>>,
    has_wildcard: bool,
    /// Hidden column texts, in order.
    hidden: Vec<String>,
    /// Per hidden column: it is an AVG's sum (not to be shared with a plain `SUM`).
    hidden_avg: Vec<bool>,
    /// A hidden column other than an AVG's count was added.
    hidden_plain: bool,
    aggregates: Vec<AggregateColumn>,
    renamed: Vec<(ColumnPos, String)>,
    edits: Vec<(Range<usize>, String)>,
}

impl<'q> Builder<'q> {
    fn new(projection: &'q [SelectItem]) -> Result<Self, MergeError> {
        let wildcard = |item: &SelectItem| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        };
        let first = projection.iter().position(wildcard);
        let last = projection.iter().rposition(wildcard);
        let n = projection.len();
        let mut items = Vec::with_capacity(n);
        for (i, item) in projection.iter().enumerate() {
            let pos = match (first, last) {
                (None, _) | (_, None) => Some(ColumnPos::Start(i)),
                (Some(f), _) if i < f => Some(ColumnPos::Start(i)),
                (_, Some(l)) if i > l => Some(ColumnPos::End(n - 1 - i)),
                _ => None,
            };
            let expr = item_expr(item);
            let aggregate = match expr {
                Some(expr) => aggregate_of(expr)?.is_some(),
                None => false,
            };
            items.push(Item {
                expr,
                alias: match item {
                    SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                    _ => None,
                },
                pos,
                aggregate,
            });
        }
        Ok(Builder {
            items,
            has_wildcard: first.is_some(),
            hidden: Vec::new(),
            hidden_avg: Vec::new(),
            hidden_plain: false,
            aggregates: Vec::new(),
            renamed: Vec::new(),
            edits: Vec::new(),
        })
    }

    /// Appends a hidden column (or finds the same one); refuses text sqlparser may have
    /// rendered wrongly.
    fn hidden_text(&mut self, text: String) -> Result<ColumnPos, MergeError> {
        self.hidden_column(text, true)
    }

    /// Appends a hidden column; `shared`: an equal existing one will do. An AVG's `SUM` is
    /// never shared: its merged value becomes the average, which a plain `SUM` must not see.
    fn hidden_column(&mut self, text: String, shared: bool) -> Result<ColumnPos, MergeError> {
        if text.contains('\\') {
            return Err(unsupported(
                "a backslash in a string of an added column (it would not round-trip)",
            ));
        }
        if shared
            && let Some(j) = self
                .hidden
                .iter()
                .zip(&self.hidden_avg)
                .position(|(h, &avg)| *h == text && !avg)
        {
            return Ok(ColumnPos::Hidden(j));
        }
        self.hidden.push(text);
        self.hidden_avg.push(!shared);
        Ok(ColumnPos::Hidden(self.hidden.len() - 1))
    }

    /// The column `expr` refers to (an item by position, alias or equal expression, else a new
    /// hidden column), and whether it is an aggregate.
    fn column_of(&mut self, expr: &Expr, positions: bool) -> Result<(ColumnPos, bool), MergeError> {
        if positions
            && let Expr::Value(v) = expr
            && let Value::Number(n, _) = &v.value
        {
            let index = n
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .filter(|&i| i < self.items.len())
                .ok_or_else(|| unsupported("a column position outside the select list"))?;
            let item = &self.items[index];
            let pos = item
                .pos
                .ok_or_else(|| unsupported("a column position between two `*`"))?;
            return Ok((pos, item.aggregate));
        }
        if let Expr::Identifier(ident) = expr {
            let name = ident.value.to_lowercase();
            if let Some(item) = self
                .items
                .iter()
                .find(|item| item.alias.as_deref() == Some(name.as_str()) && item.pos.is_some())
                && let Some(pos) = item.pos
            {
                return Ok((pos, item.aggregate));
            }
        }
        let text = expr.to_string();
        if let Some(item) = self.items.iter().find(|item| {
            item.pos.is_some() && item.expr.is_some_and(|e| same_column(e, expr, &text))
        }) && let Some(pos) = item.pos
        {
            return Ok((pos, item.aggregate));
        }
        // Not in the select list: a hidden column.
        match aggregate_of(expr)? {
            Some(Fn::Avg(args)) => {
                let avg = self
                    .hidden
                    .iter()
                    .zip(&self.hidden_avg)
                    .position(|(h, &avg)| avg && *h == format!("SUM{args}"));
                if let Some(j) = avg {
                    return Ok((ColumnPos::Hidden(j), true));
                }
                let sum = self.hidden_column(format!("SUM{args}"), false)?;
                let count = self.hidden_text(format!("COUNT{args}"))?;
                for (column, function) in
                    [(count, Aggregate::Count), (sum, Aggregate::Avg { count })]
                {
                    if !self.aggregates.iter().any(|a| a.column == column) {
                        self.aggregates.push(AggregateColumn { column, function });
                    }
                }
                self.hidden_plain = true;
                Ok((sum, true))
            }
            Some(Fn::Plain(function)) => {
                let column = self.hidden_text(text)?;
                if !self.aggregates.iter().any(|a| a.column == column) {
                    self.aggregates.push(AggregateColumn { column, function });
                }
                self.hidden_plain = true;
                Ok((column, true))
            }
            None => {
                self.hidden_plain = true;
                Ok((self.hidden_text(text)?, false))
            }
        }
    }

    /// Whether a HAVING condition needs merged aggregates (an aggregate call, or an alias of an
    /// aggregate item).
    fn uses_aggregates(&self, condition: &Expr) -> bool {
        if contains_aggregate(condition) {
            return true;
        }
        let mut stack = vec![condition];
        while let Some(expr) = stack.pop() {
            if let Expr::Identifier(ident) = expr {
                let name = ident.value.to_lowercase();
                if self
                    .items
                    .iter()
                    .any(|i| i.aggregate && i.alias.as_deref() == Some(name.as_str()))
                {
                    return true;
                }
            }
            stack.extend(children(expr));
        }
        false
    }

    fn having(&mut self, expr: &Expr, depth: usize) -> Result<Having, MergeError> {
        if depth > MAX_HAVING_DEPTH {
            return Err(unsupported("a HAVING condition nested this deep"));
        }
        let depth = depth + 1;
        match expr {
            Expr::Nested(inner) => self.having(inner, depth),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(Having::Not(Box::new(self.having(expr, depth)?))),
            Expr::BinaryOp { left, op, right } => {
                let both = |b: &mut Self| -> Result<(Box<Having>, Box<Having>), MergeError> {
                    Ok((
                        Box::new(b.having(left, depth)?),
                        Box::new(b.having(right, depth)?),
                    ))
                };
                match op {
                    BinaryOperator::And => {
                        let (l, r) = both(self)?;
                        Ok(Having::And(l, r))
                    }
                    BinaryOperator::Or => {
                        let (l, r) = both(self)?;
                        Ok(Having::Or(l, r))
                    }
                    _ => {
                        let op = cmp_op(op).ok_or_else(|| {
                            unsupported("a HAVING operator other than a comparison")
                        })?;
                        if let Some(value) = literal(right) {
                            let (column, _) = self.column_of(left, false)?;
                            Ok(Having::Compare { column, op, value })
                        } else if let Some(value) = literal(left) {
                            let (column, _) = self.column_of(right, false)?;
                            Ok(Having::Compare {
                                column,
                                op: flip(op),
                                value,
                            })
                        } else {
                            Err(unsupported("a HAVING comparison without a literal side"))
                        }
                    }
                }
            }
            _ => Err(unsupported(
                "a HAVING condition other than comparisons with literals, AND, OR, NOT",
            )),
        }
    }
}
