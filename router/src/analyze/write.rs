//! The write side of the analysis: `INSERT` / `REPLACE` rows and their keys, `UPDATE` and
//! `DELETE` scopes, `ON DUPLICATE KEY UPDATE` / `SET` assignments of the shard key, and DDL.

use std::ops::Range;

use sqlparser::ast::{
    self, Assignment, AssignmentTarget, FromTable, ObjectName, OnInsert, SchemaName, SetExpr,
    TableObject, UpdateTableFromKind,
};

use super::walk::{Role, Walker, last_ident, role_of, split_name};
use super::{AnalyzeError, DdlInfo, InsertInfo, InsertRow, KeyColumns, StatementType};

impl Walker<'_> {
    pub(super) fn insert(&mut self, insert: &ast::Insert) -> Result<StatementType, AnalyzeError> {
        let kind = if insert.replace_into {
            StatementType::Replace
        } else {
            StatementType::Insert
        };
        self.open_scope();
        let result = self.insert_in_scope(insert);
        self.close_scope();
        result.map(|()| kind)
    }

    fn insert_in_scope(&mut self, insert: &ast::Insert) -> Result<(), AnalyzeError> {
        let TableObject::TableName(name) = &insert.table else {
            return Ok(());
        };
        let Some(table) = self.add_named_table(name) else {
            return Ok(());
        };
        let key = self.key_of(table).cloned();
        let columns: Vec<String> = insert
            .columns
            .iter()
            .filter_map(|c| last_ident(c).map(|i| i.value.to_lowercase()))
            .collect();
        let columns_listed = !columns.is_empty();
        let position = |column: Option<&str>| {
            column.and_then(|column| columns.iter().position(|c| c == column))
        };
        let key_at = key.as_ref().and_then(|k| position(Some(&k.key)));
        let gene_at = key.as_ref().and_then(|k| position(k.gene.as_deref()));
        let gene_absent =
            columns_listed && key.as_ref().is_some_and(|k| k.gene.is_some()) && gene_at.is_none();

        let mut rows = Vec::new();
        let mut from_select = false;
        if let Some(source) = &insert.source {
            if let SetExpr::Values(values) = source.body.as_ref() {
                for row in &values.rows {
                    let start = self.src.offset(row.opening_token.0.span.start);
                    let end = self.src.offset(row.closing_token.0.span.end);
                    let (Some(start), Some(end)) = (start, end) else {
                        return Err(AnalyzeError::NoPosition("a VALUES row"));
                    };
                    let at = |i: Option<usize>| i.and_then(|i| row.content.get(i));
                    let key = at(key_at)
                        .and_then(|e| self.key_literal(e, Role::Key))
                        .or_else(|| at(gene_at).and_then(|e| self.key_literal(e, Role::Gene)));
                    rows.push(InsertRow {
                        key,
                        span: start..end,
                    });
                    for expr in &row.content {
                        self.walk_expr(expr);
                    }
                }
            } else {
                from_select = true;
                self.query(source);
            }
        }
        if !insert.assignments.is_empty() {
            let span = self.assignments_span(&insert.assignments)?;
            let value = |role: Role| {
                insert.assignments.iter().find_map(|a| {
                    let column = assigned_column(a)?;
                    let matches = key
                        .as_ref()
                        .is_some_and(|k| role_of(&column, k) == Some(role));
                    if matches {
                        self.key_literal(&a.value, role)
                    } else {
                        None
                    }
                })
            };
            let row_key = value(Role::Key).or_else(|| value(Role::Gene));
            let assigns_gene = key.as_ref().is_some_and(|k| {
                insert.assignments.iter().any(|a| {
                    assigned_column(a).is_some_and(|c| k.gene.as_deref() == Some(c.as_str()))
                })
            });
            rows.push(InsertRow { key: row_key, span });
            for assignment in &insert.assignments {
                self.walk_expr(&assignment.value);
            }
            self.insert = Some(InsertInfo {
                table,
                columns_listed: true,
                gene_absent: key.as_ref().is_some_and(|k| k.gene.is_some()) && !assigns_gene,
                rows,
                from_select,
            });
        } else {
            self.insert = Some(InsertInfo {
                table,
                columns_listed,
                gene_absent,
                rows,
                from_select,
            });
        }
        if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &insert.on {
            if let Some(key) = &key
                && assigns_key(assignments, key)
            {
                self.updates_shard_key = true;
            }
            for assignment in assignments {
                self.walk_expr(&assignment.value);
            }
        }
        Ok(())
    }

    /// The byte range of an `INSERT ... SET a = 1, b = 2` list: from the first target to the end
    /// of the list (`ON DUPLICATE KEY UPDATE`, or the end of the statement).
    fn assignments_span(&self, assignments: &[Assignment]) -> Result<Range<usize>, AnalyzeError> {
        let first = assignments.first().and_then(|a| match &a.target {
            AssignmentTarget::ColumnName(name) => name.0.first(),
            AssignmentTarget::Tuple(names) => names.first().and_then(|n| n.0.first()),
        });
        let start = first
            .and_then(|part| match part {
                ast::ObjectNamePart::Identifier(ident) => self.src.offset(ident.span.start),
                ast::ObjectNamePart::Function(_) => None,
            })
            .ok_or(AnalyzeError::NoPosition("the SET list"))?;
        let tokens = self.src.tokens();
        let mut depth = 0i32;
        let mut end = None;
        for i in self.src.token_at(start)..tokens.len() {
            if self.src.is_punct(i, "(") {
                depth += 1;
            } else if self.src.is_punct(i, ")") {
                depth -= 1;
            } else if depth == 0
                && (self.src.is_punct(i, ";")
                    || (self.src.is_word(i, "ON") && self.src.is_word(i + 1, "DUPLICATE")))
            {
                break;
            }
            end = tokens.get(i).map(|t| t.end);
        }
        let end = end.ok_or(AnalyzeError::NoPosition("the SET list"))?;
        Ok(start..end)
    }

    pub(super) fn update(&mut self, update: &ast::Update) {
        self.open_scope();
        let mut inner_on = Vec::new();
        self.table_with_joins(&update.table, &mut inner_on);
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &update.from
        {
            for table in from {
                self.table_with_joins(table, &mut inner_on);
            }
        }
        for assignment in &update.assignments {
            for name in assignment_targets(assignment) {
                let parts: Vec<ast::Ident> = name
                    .0
                    .iter()
                    .filter_map(|p| match p {
                        ast::ObjectNamePart::Identifier(i) => Some(i.clone()),
                        ast::ObjectNamePart::Function(_) => None,
                    })
                    .collect();
                if let Some(column) = self.resolve_parts(&parts)
                    && let Some(key) = self.key_of(column.table)
                    && role_of(&column.column, key).is_some()
                {
                    self.updates_shard_key = true;
                }
            }
            self.walk_expr(&assignment.value);
        }
        if let Some(selection) = &update.selection {
            self.walk_expr(selection);
        }
        self.constrain_scope(update.selection.as_ref(), &inner_on);
        self.close_scope();
    }

    pub(super) fn delete(&mut self, delete: &ast::Delete) {
        self.open_scope();
        let mut inner_on = Vec::new();
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        for table in from.iter().chain(delete.using.iter().flatten()) {
            self.table_with_joins(table, &mut inner_on);
        }
        if let Some(selection) = &delete.selection {
            self.walk_expr(selection);
        }
        self.constrain_scope(delete.selection.as_ref(), &inner_on);
        self.close_scope();
    }

    /// Walks a DDL statement; `None` when `statement` is not DDL.
    pub(super) fn ddl(&mut self, statement: &ast::Statement) -> Option<()> {
        use ast::Statement as S;
        self.open_scope();
        let mut database = None;
        match statement {
            S::CreateTable(create) => {
                self.add_named_table(&create.name);
                if let Some(query) = &create.query {
                    self.query(query);
                }
            }
            S::AlterTable(alter) => {
                self.add_named_table(&alter.name);
            }
            S::CreateIndex(create) => {
                self.add_named_table(&create.table_name);
            }
            S::CreateView(view) => {
                self.add_named_table(&view.name);
                self.query(&view.query);
            }
            S::Drop {
                object_type,
                names,
                table,
                ..
            } => match object_type {
                ast::ObjectType::Table | ast::ObjectType::View => {
                    for name in names {
                        self.add_named_table(name);
                    }
                }
                ast::ObjectType::Index => {
                    if let Some(table) = table {
                        self.add_named_table(table);
                    }
                }
                ast::ObjectType::Database | ast::ObjectType::Schema => {
                    database = names.first().and_then(database_name);
                }
                _ => {}
            },
            S::Truncate(truncate) => {
                for target in &truncate.table_names {
                    self.add_named_table(&target.name);
                }
            }
            S::RenameTable(renames) => {
                for rename in renames {
                    self.add_named_table(&rename.old_name);
                    self.add_named_table(&rename.new_name);
                }
            }
            S::CreateDatabase { db_name, .. } => database = database_name(db_name),
            S::CreateSchema { schema_name, .. } => {
                database = match schema_name {
                    SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                        database_name(name)
                    }
                    SchemaName::UnnamedAuthorization(ident) => Some(ident.value.clone()),
                }
            }
            _ => {
                self.close_scope();
                return None;
            }
        }
        self.close_scope();
        self.ddl = Some(DdlInfo { database });
        Some(())
    }
}

fn database_name(name: &ObjectName) -> Option<String> {
    split_name(name).map(|(_, name)| name)
}

fn assignment_targets(assignment: &Assignment) -> Vec<&ObjectName> {
    match &assignment.target {
        AssignmentTarget::ColumnName(name) => vec![name],
        AssignmentTarget::Tuple(names) => names.iter().collect(),
    }
}

/// The column an `INSERT ... SET` / `ON DUPLICATE KEY UPDATE` assignment targets (lower-case).
fn assigned_column(assignment: &Assignment) -> Option<String> {
    match &assignment.target {
        AssignmentTarget::ColumnName(name) => last_ident(name).map(|i| i.value.to_lowercase()),
        AssignmentTarget::Tuple(_) => None,
    }
}

fn assigns_key(assignments: &[Assignment], key: &KeyColumns) -> bool {
    assignments.iter().any(|a| {
        assignment_targets(a).into_iter().any(|name| {
            last_ident(name).is_some_and(|i| role_of(&i.value.to_lowercase(), key).is_some())
        })
    })
}
