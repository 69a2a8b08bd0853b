//! [`merge_spec`]: a `SELECT`'s [`MergeSpec`] and the SQL its shards receive.
//!
//! sqlparser tells what the clauses mean; the crate's lexer tells where they are in the text
//! (sqlparser's spans do not cover every node's end). The shard SQL is the client's text with a
//! few edits: `AVG` renamed `SUM` in place, hidden columns inserted after the last select item,
//! and the HAVING / ORDER BY / LIMIT clauses removed or replaced.

use std::ops::Range;

use sqlparser::ast::{
    self, BinaryOperator, Distinct, DuplicateTreatment, Expr, FunctionArguments, GroupByExpr,
    LimitClause, ObjectNamePart, OrderByKind, OrderBySort, SelectItem, SetExpr, UnaryOperator,
    Value,
};

use super::{
    Aggregate, AggregateColumn, CmpOp, ColumnPos, Having, Literal, MergeError, MergeSpec, SortKey,
};
use crate::source::{self, ParseFailure, Source};

/// Select modifiers that may stand between `SELECT` and the first item.
const MODIFIERS: [&str; 11] = [
    "ALL",
    "DISTINCT",
    "DISTINCTROW",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// Aggregate functions the merge cannot combine from per-shard results.
const OTHER_AGGREGATES: [&str; 13] = [
    "GROUP_CONCAT",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "BIT_AND",
    "BIT_OR",
    "BIT_XOR",
    "JSON_ARRAYAGG",
    "JSON_OBJECTAGG",
];

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

/// Where the outer `SELECT`'s pieces are in the text.
#[derive(Debug)]
struct Layout {
    /// Byte range of each select item.
    items: Vec<Range<usize>>,
    /// End of the last select item: hidden columns go here.
    items_end: usize,
    having: Option<Range<usize>>,
    order: Option<Range<usize>>,
    limit: Option<Range<usize>>,
}

impl Layout {
    fn find(src: &Source<'_>, select: &ast::Select) -> Result<Layout, MergeError> {
        let lost = || unsupported("the select list could not be located in the text");
        let start = src
            .offset(select.select_token.0.span.start)
            .ok_or_else(lost)?;
        let mut i = src.token_at(start);
        if !src.is_word(i, "SELECT") {
            return Err(lost());
        }
        i += 1;
        while MODIFIERS.iter().any(|m| src.is_word(i, m)) {
            i += 1;
        }
        let tokens = src.tokens();
        let ends_items = |i: usize| {
            [
                "FROM",
                "INTO",
                "WHERE",
                "GROUP",
                "HAVING",
                "WINDOW",
                "ORDER",
                "LIMIT",
                "FOR",
                "LOCK",
                "PROCEDURE",
                "UNION",
            ]
            .iter()
            .any(|w| src.is_word(i, w))
                || src.is_punct(i, ";")
        };
        let mut items = Vec::new();
        let mut depth = 0usize;
        let mut piece: Option<Range<usize>> = None;
        while let Some(token) = tokens.get(i) {
            if depth == 0 && (ends_items(i) || src.is_punct(i, ",")) {
                items.extend(piece.take());
                if !src.is_punct(i, ",") {
                    break;
                }
            } else {
                if src.is_punct(i, "(") {
                    depth += 1;
                } else if src.is_punct(i, ")") {
                    depth = depth.checked_sub(1).ok_or_else(lost)?;
                }
                piece = Some(piece.map_or(token.start..token.end, |p| p.start..token.end));
            }
            i += 1;
        }
        items.extend(piece);
        if items.len() != select.projection.len() {
            return Err(lost());
        }
        let items_end = items.last().map(|r| r.end).ok_or_else(lost)?;

        // Clause keywords at depth 0 after the select list.
        let (mut having, mut window, mut order, mut limit, mut end) =
            (None, None, None, None, None);
        let mut depth = 0usize;
        while let Some(token) = tokens.get(i) {
            if src.is_punct(i, "(") {
                depth += 1;
            } else if src.is_punct(i, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 {
                if src.is_word(i, "HAVING") {
                    having = Some(token.start);
                } else if src.is_word(i, "WINDOW") {
                    window = Some(token.start);
                } else if src.is_word(i, "ORDER") && src.is_word(i + 1, "BY") {
                    order = Some(token.start);
                } else if src.is_word(i, "LIMIT") {
                    limit = Some(token.start);
                } else if ["FOR", "LOCK", "INTO", "PROCEDURE"]
                    .iter()
                    .any(|w| src.is_word(i, w))
                    || src.is_punct(i, ";")
                {
                    end = Some(token.start);
                    break;
                }
            }
            i += 1;
        }
        let end = end.unwrap_or(src_len(src));
        let first = |candidates: &[Option<usize>]| {
            candidates.iter().flatten().copied().min().unwrap_or(end)
        };
        Ok(Layout {
            items,
            items_end,
            having: having.map(|h| h..first(&[window, order, limit])),
            order: order.map(|o| o..first(&[limit])),
            limit: limit.map(|l| l..end),
        })
    }
}

fn src_len(src: &Source<'_>) -> usize {
    src.tokens().last().map_or(0, |t| t.end)
}

/// Applies non-overlapping edits to `sql`.
fn apply_edits(sql: &str, mut edits: Vec<(Range<usize>, String)>) -> Result<String, MergeError> {
    edits.sort_by_key(|(range, _)| (range.start, range.end));
    let mut out = String::with_capacity(sql.len() + 64);
    let mut at = 0;
    for (range, text) in edits {
        let kept = sql
            .get(at..range.start)
            .ok_or_else(|| unsupported("overlapping rewrites of the statement"))?;
        out.push_str(kept);
        out.push_str(&text);
        at = range.end.max(at);
    }
    out.push_str(sql.get(at..).unwrap_or_default());
    Ok(out.trim_end().to_owned())
}

/// A select item as the spec sees it.
struct Item<'q> {
    expr: Option<&'q Expr>,
    alias: Option<String>,
    /// `None` between two wildcards.
    pos: Option<ColumnPos>,
    aggregate: bool,
}

/// An aggregate call of a select item.
enum Fn {
    Plain(Aggregate),
    /// `AVG`, with its argument list as text (`(x)`).
    Avg(String),
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

fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => Some(expr),
        _ => None,
    }
}

/// Whether select-item expression `item` is the column `expr` (rendered as `text`): equal
/// text, or the same column name where one side is unqualified.
fn same_column(item: &Expr, expr: &Expr, text: &str) -> bool {
    if item.to_string() == text {
        return true;
    }
    let last = |e: &Expr| match e {
        Expr::Identifier(i) => Some((i.value.to_lowercase(), false)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| (i.value.to_lowercase(), true)),
        _ => None,
    };
    match (last(item), last(expr)) {
        (Some((a, qa)), Some((b, qb))) => a == b && !(qa && qb),
        _ => false,
    }
}

/// The aggregate an expression is, `None` for a plain expression; an error for an aggregate
/// the merge cannot combine, or one inside a larger expression.
fn aggregate_of(expr: &Expr) -> Result<Option<Fn>, MergeError> {
    if let Expr::Function(function) = expr
        && let Some(name) = function_name(function)
    {
        let upper = name.to_ascii_uppercase();
        let is_plain = ["COUNT", "SUM", "MIN", "MAX", "AVG"].contains(&upper.as_str());
        if is_plain || OTHER_AGGREGATES.contains(&upper.as_str()) {
            if function.over.is_some() {
                return Err(unsupported("window functions"));
            }
            if !is_plain {
                return Err(MergeError::Unsupported(format!("the aggregate {upper}")));
            }
            let distinct = matches!(
                &function.args,
                FunctionArguments::List(list)
                    if list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
            );
            if distinct && !matches!(upper.as_str(), "MIN" | "MAX") {
                return Err(MergeError::Unsupported(format!("{upper}(DISTINCT ..)")));
            }
            let inner: Vec<&Expr> = children(expr);
            if inner.iter().any(|e| contains_aggregate(e)) {
                return Err(unsupported("nested aggregates"));
            }
            return Ok(Some(match upper.as_str() {
                "COUNT" => Fn::Plain(Aggregate::Count),
                "SUM" => Fn::Plain(Aggregate::Sum),
                "MIN" => Fn::Plain(Aggregate::Min),
                "MAX" => Fn::Plain(Aggregate::Max),
                _ => Fn::Avg(function.args.to_string()),
            }));
        }
        if function.over.is_some() {
            return Err(unsupported("window functions"));
        }
    }
    if children(expr).iter().any(|e| contains_aggregate(e)) {
        return Err(unsupported("an aggregate inside a larger expression"));
    }
    Ok(None)
}

fn function_name(function: &ast::Function) -> Option<&str> {
    match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(&ident.value),
        _ => None,
    }
}

/// Whether an aggregate or window call appears anywhere in `expr`. Iterative.
fn contains_aggregate(expr: &Expr) -> bool {
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        if let Expr::Function(function) = expr
            && let Some(name) = function_name(function)
        {
            let upper = name.to_ascii_uppercase();
            if function.over.is_some()
                || ["COUNT", "SUM", "MIN", "MAX", "AVG"].contains(&upper.as_str())
                || OTHER_AGGREGATES.contains(&upper.as_str())
            {
                return true;
            }
        }
        stack.extend(children(expr));
    }
    false
}

/// The sub-expressions of the common expression kinds (not of subqueries: an aggregate inside a
/// subquery is the subquery's).
fn children(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryOp { left, right, .. } => vec![left, right],
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::Cast { expr, .. }
        | Expr::Convert { expr, .. }
        | Expr::Collate { expr, .. } => vec![expr],
        Expr::Between {
            expr, low, high, ..
        } => vec![expr, low, high],
        Expr::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => std::iter::once(expr.as_ref()).chain(list).collect(),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => operand
            .as_deref()
            .into_iter()
            .chain(conditions.iter().flat_map(|c| [&c.condition, &c.result]))
            .chain(else_result.as_deref())
            .collect(),
        Expr::Function(function) => match &function.args {
            FunctionArguments::List(list) => list
                .args
                .iter()
                .filter_map(|arg| match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))
                    | ast::FunctionArg::Named {
                        arg: ast::FunctionArgExpr::Expr(e),
                        ..
                    } => Some(e),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        Expr::Tuple(items) => items.iter().collect(),
        _ => Vec::new(),
    }
}

fn cmp_op(op: &BinaryOperator) -> Option<CmpOp> {
    Some(match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::NotEq,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::LtEq,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

/// `a op b` as `b flip(op) a`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

fn literal(expr: &Expr) -> Option<Literal> {
    match expr {
        Expr::Nested(inner) => literal(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Literal::Number(n) => Some(Literal::Number(match n.strip_prefix('-') {
                Some(positive) => positive.to_owned(),
                None => format!("-{n}"),
            })),
            _ => None,
        },
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(Literal::Number(n.clone())),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(Literal::Str(s.clone().into_bytes()))
            }
            Value::Null => Some(Literal::Null),
            _ => None,
        },
        _ => None,
    }
}

/// `(limit, offset)` of a LIMIT clause of integer literals.
fn limit_of(clause: Option<&LimitClause>) -> Result<(Option<u64>, u64), MergeError> {
    let number = |expr: &Expr| match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let bad =
        || unsupported("LIMIT / OFFSET other than integer literals (substitute parameters first)");
    match clause {
        None => Ok((None, 0)),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(unsupported("LIMIT BY"));
            }
            let limit = match limit {
                Some(expr) => Some(number(expr).ok_or_else(bad)?),
                None => None,
            };
            let offset = match offset {
                Some(offset) => number(&offset.value).ok_or_else(bad)?,
                None => 0,
            };
            Ok((limit, offset))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => Ok((
            Some(number(limit).ok_or_else(bad)?),
            number(offset).ok_or_else(bad)?,
        )),
    }
}
