//! Shard-key constraints: which key (or gene) values a `WHERE` / inner-join `ON` limits each
//! sharded table of a scope to, and literals and placeholders as [`KeyRef`]s.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value};

use super::walk::{Role, Walker, role_of, split};
use super::{KeyColumns, KeyConstraint, KeyRef};

/// A literal or placeholder, before it is known to be a key's or a gene's.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Lit {
    Int(i64),
    Str(String),
    Param(usize),
}

impl Walker<'_> {
    /// Sets the constraint of every sharded table of the innermost scope from `selection` and
    /// the inner joins' `ON` expressions, and records `WHERE` join conditions.
    pub(super) fn constrain_scope(&mut self, selection: Option<&Expr>, inner_on: &[&Expr]) {
        if let Some(selection) = selection {
            for conjunct in split(selection, &BinaryOperator::And) {
                self.record_join(conjunct);
            }
        }
        let scope = self.scopes.last().cloned().unwrap_or_default();
        for table in scope {
            let Some(key) = self.key_of(table).cloned() else {
                continue;
            };
            let mut best = None;
            for expr in selection.into_iter().chain(inner_on.iter().copied()) {
                if let Some(values) = self.constrain(expr, table, &key) {
                    best = Some(match best {
                        Some(current) => better(current, values),
                        None => values,
                    });
                }
            }
            if let Some(values) = best
                && let Some(entry) = self.sharded.iter_mut().find(|s| s.table == table)
            {
                entry.constraint = KeyConstraint::Values(values);
            }
        }
    }

    /// The key values `expr` (a condition) limits `table` to, if it does.
    fn constrain(&self, expr: &Expr, table: usize, key: &KeyColumns) -> Option<Vec<KeyRef>> {
        let mut best: Option<Vec<KeyRef>> = None;
        for conjunct in split(expr, &BinaryOperator::And) {
            if let Some(values) = self.constrain_disjunction(conjunct, table, key) {
                best = Some(match best {
                    Some(current) => better(current, values),
                    None => values,
                });
            }
        }
        best
    }

    /// A conjunct limits the table when every one of its disjuncts does.
    fn constrain_disjunction(
        &self,
        expr: &Expr,
        table: usize,
        key: &KeyColumns,
    ) -> Option<Vec<KeyRef>> {
        let mut values: Vec<KeyRef> = Vec::new();
        for disjunct in split(expr, &BinaryOperator::Or) {
            for value in self.constrain_leaf(disjunct, table, key)? {
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        (!values.is_empty()).then_some(values)
    }

    fn constrain_leaf(&self, expr: &Expr, table: usize, key: &KeyColumns) -> Option<Vec<KeyRef>> {
        match expr {
            Expr::Nested(inner) => self.constrain(inner, table, key),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => self
                .key_equals(left, right, table, key)
                .or_else(|| self.key_equals(right, left, table, key))
                .map(|value| vec![value]),
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => {
                let role = self.role(expr, table, key)?;
                let mut values = Vec::with_capacity(list.len());
                for item in list {
                    let value = self.key_literal(item, role)?;
                    if !values.contains(&value) {
                        values.push(value);
                    }
                }
                (!values.is_empty()).then_some(values)
            }
            _ => None,
        }
    }

    fn key_equals(
        &self,
        column: &Expr,
        value: &Expr,
        table: usize,
        key: &KeyColumns,
    ) -> Option<KeyRef> {
        let role = self.role(column, table, key)?;
        self.key_literal(value, role)
    }

    /// Whether `expr` is `table`'s key or gene column.
    fn role(&self, expr: &Expr, table: usize, key: &KeyColumns) -> Option<Role> {
        let column = self.resolve(expr)?;
        if column.table != table {
            return None;
        }
        role_of(&column.column, key)
    }

    /// `expr` as the value of a key (or gene) column, when it is a literal or a placeholder.
    pub(super) fn key_literal(&self, expr: &Expr, role: Role) -> Option<KeyRef> {
        let lit = self.literal(expr)?;
        match (role, lit) {
            (Role::Key, Lit::Int(n)) => Some(KeyRef::Int(n)),
            (Role::Key, Lit::Str(s)) => Some(KeyRef::Str(s)),
            (Role::Key, Lit::Param(i)) => Some(KeyRef::Param(i)),
            (Role::Gene, Lit::Int(n)) => Some(KeyRef::Gene(n)),
            (Role::Gene, Lit::Str(s)) => s.trim().parse().ok().map(KeyRef::Gene),
            (Role::Gene, Lit::Param(i)) => Some(KeyRef::GeneParam(i)),
        }
    }

    fn literal(&self, expr: &Expr) -> Option<Lit> {
        match expr {
            Expr::Nested(inner) => self.literal(inner),
            Expr::UnaryOp {
                op: UnaryOperator::Plus,
                expr,
            } => match self.literal(expr)? {
                lit @ (Lit::Int(_) | Lit::Str(_)) => Some(lit),
                Lit::Param(_) => None,
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match expr.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) => Some(number(&format!("-{n}"))),
                    _ => None,
                },
                _ => None,
            },
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(number(n)),
                Value::SingleQuotedString(s)
                | Value::DoubleQuotedString(s)
                | Value::NationalStringLiteral(s) => Some(Lit::Str(s.clone())),
                Value::Placeholder(p) if p == "?" => {
                    self.src.placeholder_index(v.span).map(Lit::Param)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The narrower of two value sets (either is a valid superset of the rows' shards); on a tie
/// the one without gene values, which the shard map resolves more directly.
fn better(a: Vec<KeyRef>, b: Vec<KeyRef>) -> Vec<KeyRef> {
    let genes = |v: &[KeyRef]| {
        v.iter()
            .any(|k| matches!(k, KeyRef::Gene(_) | KeyRef::GeneParam(_)))
    };
    if b.len() < a.len() || (b.len() == a.len() && genes(&a) && !genes(&b)) {
        b
    } else {
        a
    }
}

/// A number literal: an `i64` when it is one, else its text.
fn number(text: &str) -> Lit {
    text.parse()
        .map_or_else(|_| Lit::Str(text.to_owned()), Lit::Int)
}
