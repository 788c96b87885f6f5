//! The AST check, for statements the keyword fast path cannot settle: `sqlparser`'s PostgreSQL dialect,
//! then a walk of the whole tree (subqueries and CTEs included) for anything that must not reach a
//! replica.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, ObjectName, Query, SetExpr, Statement, TableFactor,
    TransactionAccessMode, TransactionMode, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::functions::FunctionPolicy;
use super::Reason;

/// What one statement means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Safe on a replica.
    Read(Reason),
    /// Must run on the primary.
    Write(Reason),
    /// Runs anywhere and does not decide (COMMIT, ROLLBACK, SAVEPOINT…).
    Neutral,
}

/// Settings whose value differs between a primary and a replica: `SHOW` of these goes to the primary.
pub(crate) const PRIMARY_ONLY_SETTINGS: &[&str] = &["transaction_read_only", "in_hot_standby"];

/// Parses `sql` (one or more statements) and combines their verdicts: any write decides; otherwise
/// any read; all neutral is `Neutral`. `None` when the parser cannot read it.
pub(crate) fn classify(sql: &str, functions: &FunctionPolicy) -> Option<Verdict> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut verdict = Verdict::Neutral;
    for statement in &statements {
        match statement_verdict(statement, functions) {
            Verdict::Write(r) => return Some(Verdict::Write(r)),
            Verdict::Read(r) => {
                if verdict == Verdict::Neutral {
                    verdict = Verdict::Read(r);
                }
            }
            Verdict::Neutral => {}
        }
    }
    Some(verdict)
}

fn statement_verdict(statement: &Statement, functions: &FunctionPolicy) -> Verdict {
    match statement {
        Statement::Query(query) => read_unless_unsafe(query.as_ref(), functions),
        Statement::Explain { statement, .. } => statement_verdict(statement, functions),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if PRIMARY_ONLY_SETTINGS.contains(&name.as_str()) {
                Verdict::Write(Reason::PrimaryOnlySetting)
            } else {
                Verdict::Read(Reason::ReadOnly)
            }
        }
        Statement::ShowVariables { .. } => Verdict::Read(Reason::ReadOnly),
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            ..
        } => match source {
            CopySource::Table { .. } => Verdict::Read(Reason::ReadOnly),
            CopySource::Query(query) => read_unless_unsafe(query.as_ref(), functions),
        },
        Statement::StartTransaction { modes, .. } => {
            let read_only = modes.iter().any(|m| {
                matches!(
                    m,
                    TransactionMode::AccessMode(TransactionAccessMode::ReadOnly)
                )
            });
            if read_only {
                Verdict::Read(Reason::ReadOnlyTransaction)
            } else {
                Verdict::Write(Reason::Transaction)
            }
        }
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Verdict::Neutral,
        _ => Verdict::Write(Reason::Write),
    }
}

/// A query is a read unless something in its tree locks, writes, or creates.
fn read_unless_unsafe<T: Visit>(node: &T, functions: &FunctionPolicy) -> Verdict {
    let mut walk = Walk {
        functions,
        depth: 0,
    };
    match node.visit(&mut walk) {
        ControlFlow::Break(reason) => Verdict::Write(reason),
        ControlFlow::Continue(()) => Verdict::Read(Reason::ReadOnly),
    }
}

struct Walk<'a> {
    functions: &'a FunctionPolicy,
    /// Statements entered: anything but a query below the top one is a data-modifying CTE.
    depth: usize,
}

impl Walk<'_> {
    fn check_name(&self, name: &ObjectName) -> ControlFlow<Reason> {
        let last = name.0.last().and_then(|part| part.as_ident());
        match last {
            Some(ident) if self.functions.is_write(&ident.value) => {
                ControlFlow::Break(Reason::WriteFunction)
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = Reason;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Reason> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Reason::LockClause);
        }
        if let SetExpr::Select(select) = query.body.as_ref() {
            if select.into.is_some() {
                return ControlFlow::Break(Reason::SelectInto);
            }
        }
        if matches!(
            query.body.as_ref(),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            return ControlFlow::Break(Reason::WritingCte);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Reason> {
        self.depth += 1;
        if self.depth > 1 && !matches!(statement, Statement::Query(_)) {
            return ControlFlow::Break(Reason::WritingCte);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _: &Statement) -> ControlFlow<Reason> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Reason> {
        match expr {
            Expr::Function(f) => self.check_name(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Reason> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.check_name(name),
            _ => ControlFlow::Continue(()),
        }
    }
}
