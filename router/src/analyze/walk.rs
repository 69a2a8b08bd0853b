//! The walk over a statement's AST: scopes of tables per `SELECT`, column resolution, shard-key
//! constraints from `WHERE` / `ON`, join conditions, and subqueries found inside expressions.
//!
//! `AND` / `OR` chains and expression trees are walked with explicit stacks, not recursion: a
//! statement may chain up to 2,000 operators (the parser guard's limit). Recursion happens only
//! through subqueries and parentheses, which the guard bounds at 48 deep.

use sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget,
    JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SetExpr, TableFactor,
    TableWithJoins,
};

use super::{
    Analysis, AnalyzeError, ColumnRef, DdlInfo, InsertInfo, JoinCondition, KeyColumns,
    KeyConstraint, ShardKeys, ShardedTable, StatementType, TableRef,
};
use crate::source::Source;

/// Which of a sharded table's columns an expression names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Key,
    Gene,
}

pub(super) struct Walker<'a> {
    pub(super) src: &'a Source<'a>,
    rules: &'a dyn ShardKeys,
    pub(super) tables: Vec<TableRef>,
    pub(super) sharded: Vec<ShardedTable>,
    pub(super) joins: Vec<JoinCondition>,
    pub(super) insert: Option<InsertInfo>,
    pub(super) updates_shard_key: bool,
    pub(super) ddl: Option<DdlInfo>,
    /// Table references visible in each open `SELECT` (innermost last).
    pub(super) scopes: Vec<Vec<usize>>,
    /// Names of CTEs seen so far (lower-case): a `FROM` naming one is not a table.
    ctes: Vec<String>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(src: &'a Source<'a>, rules: &'a dyn ShardKeys) -> Self {
        Walker {
            src,
            rules,
            tables: Vec::new(),
            sharded: Vec::new(),
            joins: Vec::new(),
            insert: None,
            updates_shard_key: false,
            ddl: None,
            scopes: Vec::new(),
            ctes: Vec::new(),
        }
    }

    pub(super) fn finish(self, kind: StatementType) -> Analysis {
        Analysis {
            kind,
            tables: self.tables,
            sharded: self.sharded,
            joins: self.joins,
            insert: self.insert,
            updates_shard_key: self.updates_shard_key,
            ddl: self.ddl,
        }
    }

    /// Walks one top-level statement.
    pub(super) fn statement(
        &mut self,
        statement: &ast::Statement,
    ) -> Result<StatementType, AnalyzeError> {
        use ast::Statement as S;
        Ok(match statement {
            S::Query(query) => {
                self.query(query);
                StatementType::Select
            }
            S::Insert(insert) => self.insert(insert)?,
            S::Update(update) => {
                self.update(update);
                StatementType::Update
            }
            S::Delete(delete) => {
                self.delete(delete);
                StatementType::Delete
            }
            other => match self.ddl(other) {
                Some(()) => StatementType::Ddl,
                None => StatementType::Other,
            },
        })
    }

    pub(super) fn query(&mut self, query: &Query) {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.push(cte.alias.name.value.to_lowercase());
                self.query(&cte.query);
            }
        }
        self.set_expr(&query.body);
        if let Some(order_by) = &query.order_by
            && let ast::OrderByKind::Expressions(items) = &order_by.kind
        {
            for item in items {
                self.walk_expr(&item.expr);
            }
        }
    }

    fn set_expr(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            SetExpr::Values(values) => {
                for row in &values.rows {
                    for expr in &row.content {
                        self.walk_expr(expr);
                    }
                }
            }
            SetExpr::Table(table) => {
                if let Some(name) = &table.table_name {
                    let schema = table.schema_name.as_ref().map(|s| s.value.clone());
                    self.add_table(schema, name.value.clone(), None);
                }
            }
            // MySQL has no DML inside a query body.
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {}
        }
    }

    fn select(&mut self, select: &Select) {
        self.scopes.push(Vec::new());
        let mut inner_on = Vec::new();
        for from in &select.from {
            self.table_with_joins(from, &mut inner_on);
        }
        for item in &select.projection {
            match item {
                ast::SelectItem::UnnamedExpr(expr)
                | ast::SelectItem::ExprWithAlias { expr, .. }
                | ast::SelectItem::ExprWithAliases { expr, .. } => self.walk_expr(expr),
                _ => {}
            }
        }
        if let Some(selection) = &select.selection {
            self.walk_expr(selection);
        }
        if let ast::GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for expr in exprs {
                self.walk_expr(expr);
            }
        }
        if let Some(having) = &select.having {
            self.walk_expr(having);
        }
        self.constrain_scope(select.selection.as_ref(), &inner_on);
        self.scopes.pop();
    }

    /// Opens a scope for a DML statement's tables.
    pub(super) fn open_scope(&mut self) {
        self.scopes.push(Vec::new());
    }

    /// Closes the innermost scope.
    pub(super) fn close_scope(&mut self) {
        self.scopes.pop();
    }

    /// Adds the tables of `from` to the innermost scope, records the join conditions of its
    /// `ON` / `USING`, and collects the `ON` expressions of inner joins into `inner_on`.
    pub(super) fn table_with_joins<'q>(
        &mut self,
        from: &'q TableWithJoins,
        inner_on: &mut Vec<&'q Expr>,
    ) {
        let mut previous = self.table_factor(&from.relation, inner_on);
        for join in &from.joins {
            let right = self.table_factor(&join.relation, inner_on);
            let (constraint, inner) = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::StraightJoin(c)
                | JoinOperator::CrossJoin(c) => (Some(c), true),
                JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c) => (Some(c), false),
                JoinOperator::AsOf { constraint, .. } => (Some(constraint), false),
                _ => (None, false),
            };
            match constraint {
                Some(JoinConstraint::On(on)) => {
                    self.walk_expr(on);
                    for conjunct in split(on, &BinaryOperator::And) {
                        self.record_join(conjunct);
                    }
                    if inner {
                        inner_on.push(on);
                    }
                }
                Some(JoinConstraint::Using(columns) | JoinConstraint::UsingAlias(columns, _)) => {
                    if let (Some(left), Some(right)) = (previous, right) {
                        for column in columns {
                            if let Some(name) = last_ident(column) {
                                let column = name.value.to_lowercase();
                                self.joins.push(JoinCondition {
                                    left: ColumnRef {
                                        table: left,
                                        column: column.clone(),
                                    },
                                    right: ColumnRef {
                                        table: right,
                                        column,
                                    },
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
            previous = right.or(previous);
        }
    }

    /// Adds a table factor's tables; returns the table's index when it is one plain table.
    fn table_factor<'q>(
        &mut self,
        factor: &'q TableFactor,
        inner_on: &mut Vec<&'q Expr>,
    ) -> Option<usize> {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let (schema, table) = split_name(name)?;
                if schema.is_none() && self.ctes.contains(&table.to_lowercase()) {
                    return None;
                }
                let alias = alias.as_ref().map(|a| a.name.value.clone());
                Some(self.add_table(schema, table, alias))
            }
            TableFactor::Derived { subquery, .. } => {
                self.query(subquery);
                None
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.table_with_joins(table_with_joins, inner_on);
                None
            }
            TableFactor::TableFunction { expr, .. } => {
                self.walk_expr(expr);
                None
            }
            TableFactor::JsonTable { json_expr, .. } => {
                self.walk_expr(json_expr);
                None
            }
            _ => None,
        }
    }

    /// Records a table reference in the innermost scope (and as sharded when it is).
    pub(super) fn add_table(
        &mut self,
        schema: Option<String>,
        name: String,
        alias: Option<String>,
    ) -> usize {
        let index = self.tables.len();
        if let Some(key) = self.rules.shard_key(schema.as_deref(), &name) {
            self.sharded.push(ShardedTable {
                table: index,
                key,
                constraint: KeyConstraint::Any,
            });
        }
        self.tables.push(TableRef {
            schema,
            name,
            alias,
        });
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(index);
        }
        index
    }

    /// Adds the table named by `name` (schema-qualified or not) to the innermost scope.
    pub(super) fn add_named_table(&mut self, name: &ObjectName) -> Option<usize> {
        let (schema, table) = split_name(name)?;
        Some(self.add_table(schema, table, None))
    }

    pub(super) fn key_of(&self, table: usize) -> Option<&KeyColumns> {
        self.sharded
            .iter()
            .find(|s| s.table == table)
            .map(|s| &s.key)
    }

    /// Records `expr` as a join condition when it is `a.x = b.y` between two table references.
    pub(super) fn record_join(&mut self, expr: &Expr) {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
            && let (Some(left), Some(right)) = (self.resolve(left), self.resolve(right))
            && left.table != right.table
        {
            let condition = JoinCondition { left, right };
            if !self.joins.contains(&condition) {
                self.joins.push(condition);
            }
        }
    }

    /// The table reference and column an expression names, where that can be told.
    pub(super) fn resolve(&self, expr: &Expr) -> Option<ColumnRef> {
        match expr {
            Expr::Nested(inner) => self.resolve(inner),
            Expr::Identifier(ident) => self.resolve_parts(std::slice::from_ref(ident)),
            Expr::CompoundIdentifier(parts) => self.resolve_parts(parts),
            _ => None,
        }
    }

    /// Resolves `column`, `table.column` or `schema.table.column`.
    pub(super) fn resolve_parts(&self, parts: &[Ident]) -> Option<ColumnRef> {
        let (column, qualifier) = parts.split_last()?;
        let column = column.value.to_lowercase();
        let scope = self.scopes.last()?;
        let table = match qualifier {
            [] => {
                if let [only] = scope.as_slice() {
                    *only
                } else {
                    let mut owners = scope.iter().copied().filter(|&t| {
                        self.key_of(t)
                            .is_some_and(|key| role_of(&column, key).is_some())
                    });
                    let owner = owners.next()?;
                    if owners.next().is_some() {
                        return None;
                    }
                    owner
                }
            }
            [.., schema, table] => self.find_table(|t| {
                t.alias.is_none()
                    && t.name.eq_ignore_ascii_case(&table.value)
                    && t.schema
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(&schema.value))
            })?,
            [.., table] => self.find_table(|t| match &t.alias {
                Some(alias) => alias.eq_ignore_ascii_case(&table.value),
                None => t.name.eq_ignore_ascii_case(&table.value),
            })?,
        };
        Some(ColumnRef { table, column })
    }

    /// The first table, innermost scope first, that `matches`.
    fn find_table(&self, matches: impl Fn(&TableRef) -> bool) -> Option<usize> {
        self.scopes.iter().rev().find_map(|scope| {
            scope
                .iter()
                .copied()
                .find(|&t| self.tables.get(t).is_some_and(&matches))
        })
    }

    /// Walks an expression for the subqueries inside it.
    pub(super) fn walk_expr(&mut self, root: &Expr) {
        let mut stack = vec![root];
        while let Some(expr) = stack.pop() {
            match expr {
                Expr::Subquery(query)
                | Expr::Exists {
                    subquery: query, ..
                } => self.query(query),
                Expr::In { expr, target, .. } => {
                    stack.push(expr);
                    match target {
                        InTarget::List(list) => stack.extend(list),
                        InTarget::Subquery(query) => self.query(query),
                        InTarget::Unnest(inner) => stack.push(inner),
                        InTarget::Table { .. } => {}
                    }
                }
                Expr::BinaryOp { left, right, .. }
                | Expr::IsDistinctFrom(left, right)
                | Expr::IsNotDistinctFrom(left, right)
                | Expr::AnyOp { left, right, .. }
                | Expr::AllOp { left, right, .. } => {
                    stack.push(right);
                    stack.push(left);
                }
                Expr::UnaryOp { expr, .. }
                | Expr::Nested(expr)
                | Expr::IsNull(expr)
                | Expr::IsNotNull(expr)
                | Expr::IsTrue(expr)
                | Expr::IsNotTrue(expr)
                | Expr::IsFalse(expr)
                | Expr::IsNotFalse(expr)
                | Expr::IsUnknown(expr)
                | Expr::IsNotUnknown(expr)
                | Expr::Cast { expr, .. }
                | Expr::Convert { expr, .. }
                | Expr::Collate { expr, .. }
                | Expr::Extract { expr, .. }
                | Expr::Ceil { expr, .. }
                | Expr::Floor { expr, .. }
                | Expr::Named { expr, .. } => stack.push(expr),
                Expr::Between {
                    expr, low, high, ..
                } => stack.extend([expr.as_ref(), low, high]),
                Expr::Like { expr, pattern, .. }
                | Expr::ILike { expr, pattern, .. }
                | Expr::SimilarTo { expr, pattern, .. }
                | Expr::RLike { expr, pattern, .. } => stack.extend([expr.as_ref(), pattern]),
                Expr::Case {
                    operand,
                    conditions,
                    else_result,
                    ..
                } => {
                    stack.extend(operand.as_deref());
                    for when in conditions {
                        stack.push(&when.condition);
                        stack.push(&when.result);
                    }
                    stack.extend(else_result.as_deref());
                }
                Expr::Function(function) => {
                    match &function.args {
                        FunctionArguments::List(list) => {
                            for arg in &list.args {
                                let (FunctionArg::Unnamed(arg)
                                | FunctionArg::Named { arg, .. }
                                | FunctionArg::ExprNamed { arg, .. }) = arg;
                                if let FunctionArgExpr::Expr(inner) = arg {
                                    stack.push(inner);
                                }
                            }
                        }
                        FunctionArguments::Subquery(query) => self.query(query),
                        FunctionArguments::None => {}
                    }
                    stack.extend(function.filter.as_deref());
                }
                Expr::Tuple(items) => stack.extend(items),
                Expr::Substring {
                    expr,
                    substring_from,
                    substring_for,
                    ..
                } => {
                    stack.push(expr);
                    stack.extend(substring_from.as_deref());
                    stack.extend(substring_for.as_deref());
                }
                Expr::Trim {
                    expr, trim_what, ..
                } => {
                    stack.push(expr);
                    stack.extend(trim_what.as_deref());
                }
                Expr::Position { expr, r#in } => stack.extend([expr.as_ref(), r#in]),
                Expr::AtTimeZone {
                    timestamp,
                    time_zone,
                } => stack.extend([timestamp.as_ref(), time_zone]),
                Expr::Interval(interval) => stack.push(&interval.value),
                _ => {}
            }
        }
    }
}

/// Whether `column` (lower-case) is the key or the gene column.
pub(super) fn role_of(column: &str, key: &KeyColumns) -> Option<Role> {
    if column == key.key {
        Some(Role::Key)
    } else if key.gene.as_deref() == Some(column) {
        Some(Role::Gene)
    } else {
        None
    }
}

/// The operands of a chain of `op` (`a AND (b AND c)` -> `a, b, c`), left to right, looking
/// through parentheses around operands of the same operator. Iterative.
pub(super) fn split<'e>(expr: &'e Expr, op: &BinaryOperator) -> Vec<&'e Expr> {
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(expr) = stack.pop() {
        match expr {
            Expr::BinaryOp {
                left,
                op: this,
                right,
            } if this == op => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: this, .. } if this == op) =>
            {
                stack.push(inner);
            }
            other => out.push(other),
        }
    }
    out
}

/// `(schema, table)` of a (possibly qualified) name, quotes removed.
pub(super) fn split_name(name: &ObjectName) -> Option<(Option<String>, String)> {
    let mut idents = name.0.iter().map(|part| match part {
        ObjectNamePart::Identifier(ident) => Some(ident.value.clone()),
        ObjectNamePart::Function(_) => None,
    });
    let parts: Vec<String> = idents.by_ref().collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [] => None,
        [table] => Some((None, table.clone())),
        [.., schema, table] => Some((Some(schema.clone()), table.clone())),
    }
}

/// The last identifier of a name (`o.member_id` -> `member_id`).
pub(super) fn last_ident(name: &ObjectName) -> Option<&Ident> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(ident),
        ObjectNamePart::Function(_) => None,
    }
}
