//! Reading the spec's expressions: aggregate calls, literals, comparison operators, LIMIT.

use sqlparser::ast::{
    self, BinaryOperator, DuplicateTreatment, Expr, FunctionArguments, LimitClause, ObjectNamePart,
    SelectItem, UnaryOperator, Value,
};

use super::unsupported;
use crate::merge::{Aggregate, CmpOp, Literal, MergeError};

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

/// An aggregate call of a select item.
pub(super) enum Fn {
    Plain(Aggregate),
    /// `AVG`, with its argument list as text (`(x)`).
    Avg(String),
}

pub(super) fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => Some(expr),
        _ => None,
    }
}

/// Whether select-item expression `item` is the column `expr` (rendered as `text`): equal
/// text, or the same column name where one side is unqualified.
pub(super) fn same_column(item: &Expr, expr: &Expr, text: &str) -> bool {
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
pub(super) fn aggregate_of(expr: &Expr) -> Result<Option<Fn>, MergeError> {
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
pub(super) fn contains_aggregate(expr: &Expr) -> bool {
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
pub(super) fn children(expr: &Expr) -> Vec<&Expr> {
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

pub(super) fn cmp_op(op: &BinaryOperator) -> Option<CmpOp> {
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
pub(super) fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

pub(super) fn literal(expr: &Expr) -> Option<Literal> {
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
pub(super) fn limit_of(clause: Option<&LimitClause>) -> Result<(Option<u64>, u64), MergeError> {
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
