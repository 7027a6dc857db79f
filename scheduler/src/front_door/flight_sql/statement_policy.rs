//! The read-only policy on a query's statement, before it is planned: exactly one query (SELECT,
//! WITH or VALUES), and nothing inside it that writes. Every other statement is refused with its
//! name (`CREATE OR REPLACE VIEW is refused: …`). The plan is checked again afterwards (no DDL, DML or
//! `SET` in it), so a statement a future parser reads differently still cannot write.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Select, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use tonic::Status;

use super::status::query_status;

pub(crate) const READ_ONLY: &str =
    "vitalflow's Flight SQL is read-only and accepts one query (SELECT, WITH or VALUES) per request";

/// Words that qualify a statement's verb without saying what it acts on (`CREATE OR REPLACE VIEW`,
/// `CREATE TEMPORARY VIEW`, `SET TIME ZONE`): a statement's name runs past them to the next word.
const QUALIFIERS: &[&str] = &[
    "OR",
    "REPLACE",
    "TEMPORARY",
    "TEMP",
    "UNBOUNDED",
    "EXTERNAL",
    "UNIQUE",
    "MATERIALIZED",
    "GLOBAL",
    "LOCAL",
    "SECURE",
    "RECURSIVE",
    "TIME",
];

fn refused(what: &str) -> Status {
    Status::permission_denied(format!("{what} is refused: {READ_ONLY}"))
}

/// A statement's name as SQL spells it: its verb and what it acts on (`DROP TABLE`, `CREATE OR
/// REPLACE VIEW`, `UPDATE vitals_raw`).
fn statement_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace();
    let mut name: Vec<&str> = words.by_ref().take(1).collect();
    for word in words {
        name.push(word);
        if !QUALIFIERS.iter().any(|q| q.eq_ignore_ascii_case(word)) {
            break;
        }
    }
    name.join(" ")
}

/// Finds a write inside a query: DML as the body of a query or of one of its CTEs (`WITH x AS
/// (DELETE … RETURNING *) SELECT …`, `WITH x AS (…) INSERT INTO …`), or `SELECT … INTO`, which
/// creates a table.
struct NestedWrite;

impl Visitor for NestedWrite {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!("{} (inside a query)", statement_name(other))),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<String> {
        match select.into {
            Some(_) => ControlFlow::Break("SELECT INTO (creating a table)".into()),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Parses `sql` into exactly one query, refusing every other kind of statement, and every write
/// inside a query, with its name.
pub(crate) fn parse_query(sql: &str) -> Result<Statement, Status> {
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(query_status)?;
    if statements.len() > 1 {
        return Err(Status::invalid_argument(format!(
            "{READ_ONLY}; this request holds {} statements",
            statements.len()
        )));
    }
    match statements.pop_front() {
        Some(DFStatement::Statement(statement)) => match *statement {
            query @ Statement::Query(_) => match query.visit(&mut NestedWrite) {
                ControlFlow::Break(write) => Err(refused(&write)),
                ControlFlow::Continue(()) => Ok(query),
            },
            other => Err(refused(&statement_name(&other))),
        },
        Some(DFStatement::CreateExternalTable(_)) => Err(refused("CREATE EXTERNAL TABLE (reading files or URLs)")),
        Some(DFStatement::CopyTo(_)) => Err(refused("COPY (writing files)")),
        Some(DFStatement::Explain(_)) => Err(refused("EXPLAIN of a statement")),
        Some(DFStatement::Reset(_)) => Err(refused("RESET")),
        None => Err(Status::invalid_argument("empty SQL: send one query")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_queries_pass() {
        for sql in ["SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a", "VALUES (1)", "SELECT 1 /* ; */"] {
            assert!(parse_query(sql).is_ok(), "{sql}");
        }
        for (sql, needle) in [
            ("SELECT 1; SELECT 2", "2 statements"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE is refused"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE OR REPLACE VIEW is refused"),
            ("CREATE TEMPORARY VIEW v AS SELECT 1", "CREATE TEMPORARY VIEW is refused"),
            ("SET TIME ZONE 'UTC'", "SET TIME ZONE is refused"),
            ("INSERT INTO vitals_raw VALUES (1)", "INSERT INTO"),
            ("DELETE FROM vitals_raw", "DELETE"),
            ("DROP TABLE vitals_raw", "DROP TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", "COPY"),
            ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("", "empty"),
            ("-- nothing but a comment", "empty"),
        ] {
            let err = parse_query(sql).expect_err(sql);
            assert!(err.message().contains(needle), "{sql}: {}", err.message());
        }
    }

    #[test]
    fn writes_inside_a_query_are_refused_by_name() {
        for (sql, needle) in [
            ("WITH x AS (SELECT 1) INSERT INTO vitals_raw SELECT * FROM x", "INSERT INTO (inside a query)"),
            ("WITH x AS (SELECT 1) UPDATE vitals_raw SET heart_rate = 1", "UPDATE vitals_raw (inside a query)"),
            ("WITH x AS (SELECT 1) DELETE FROM vitals_raw", "DELETE FROM (inside a query)"),
            ("WITH x AS (DELETE FROM vitals_raw RETURNING *) SELECT * FROM x", "DELETE FROM (inside a query)"),
            ("SELECT * INTO leaked FROM vitals_raw", "SELECT INTO (creating a table)"),
            ("SELECT 1 UNION ALL (SELECT * INTO leaked FROM vitals_raw)", "SELECT INTO"),
        ] {
            let err = parse_query(sql).expect_err(sql);
            assert_eq!(err.code(), tonic::Code::PermissionDenied, "{sql}: {err}");
            assert!(err.message().contains(needle) && err.message().contains("read-only"), "{sql}: {}", err.message());
        }
    }
}
