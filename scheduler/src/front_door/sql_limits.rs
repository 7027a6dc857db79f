//! Limits on a query's size and shape, checked on its tokens before the parser runs: a query whose
//! expression tree would be thousands of levels deep (`1+1+…+1`, a long `OR` chain, `'a'||'a'||…`)
//! overflows the stack of the parser's visitors, the planner or a destructor and takes the whole
//! process down. The tokenizer does not recurse, so it is safe on any input; what it finds is refused
//! with `INVALID_ARGUMENT` naming the limit and its setting.
//!
//! Measured on the tokens:
//! - the SQL text's size in bytes;
//! - nesting: brackets (`(`, `[`, `{`) open at once;
//! - operators on one path: at each bracket level, the operators (`+`, `||`, `=`, `AND`, `OR`,
//!   `UNION`, `JOIN`, …, and the commas of a `FROM` list) since the last comma of that level, added
//!   up over the levels open at once. A chain of binary operators parses into a tree as deep as the
//!   chain is long, so this bounds the depth of every expression and set-operation tree. Lists (a
//!   `SELECT` list, `IN (…)`, `VALUES`) are wide, not deep: their commas start the count again.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tonic::Status;

/// The limits, from `[flight_sql]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SqlLimits {
    /// Longest SQL text, in bytes (`flight_sql.max_sql_bytes`).
    pub(crate) max_bytes: usize,
    /// Most operators on one path through the expression tree (`flight_sql.max_expression_terms`).
    pub(crate) max_terms: usize,
    /// Most brackets open at once (`flight_sql.max_nesting_depth`).
    pub(crate) max_nesting: usize,
}

impl From<&crate::config::FlightSqlConfig> for SqlLimits {
    fn from(config: &crate::config::FlightSqlConfig) -> SqlLimits {
        SqlLimits {
            max_bytes: config.max_sql_bytes,
            max_terms: config.max_expression_terms,
            max_nesting: config.max_nesting_depth,
        }
    }
}

/// What [`SqlLimits::check`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SqlShape {
    /// The most operators on one path.
    pub(crate) terms: usize,
    /// The most brackets open at once.
    pub(crate) nesting: usize,
}

impl SqlLimits {
    /// `Ok` with the query's shape when `sql` is within the limits, else `INVALID_ARGUMENT` naming the
    /// limit exceeded. Stops at the first limit crossed: the cost is at most one pass over the tokens.
    pub(crate) fn check(&self, sql: &str) -> Result<SqlShape, Status> {
        if sql.len() > self.max_bytes {
            return Err(Status::invalid_argument(format!(
                "the query is {} bytes long; at most {} are accepted (flight_sql.max_sql_bytes)",
                sql.len(),
                self.max_bytes
            )));
        }
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize()
            .map_err(|e| Status::invalid_argument(format!("SQL error: {e}")))?;
        let mut shape = SqlShape::default();
        // Per open bracket level: operators since its last comma, and whether it is in a FROM list.
        let mut levels = vec![Level::default()];
        let mut on_path = 0usize;
        for token in &tokens {
            match classify(token) {
                Class::Open => {
                    levels.push(Level::default());
                    shape.nesting = shape.nesting.max(levels.len() - 1);
                    if shape.nesting > self.max_nesting {
                        return Err(Status::invalid_argument(format!(
                            "the query nests brackets more than {} deep (flight_sql.max_nesting_depth)",
                            self.max_nesting
                        )));
                    }
                }
                Class::Close => {
                    // An unbalanced bracket is the parser's to report; the outermost level stays.
                    if levels.len() > 1
                        && let Some(level) = levels.pop()
                    {
                        on_path -= level.operators;
                    }
                }
                Class::Comma => {
                    if let Some(level) = levels.last_mut() {
                        if level.in_from {
                            // `FROM a, b, c`: a cross join, as deep as the list is long.
                            level.operators += 1;
                            on_path += 1;
                        } else {
                            on_path -= level.operators;
                            level.operators = 0;
                        }
                    }
                }
                Class::Operator => {
                    if let Some(level) = levels.last_mut() {
                        level.operators += 1;
                        on_path += 1;
                    }
                }
                Class::From(in_from) => {
                    if let Some(level) = levels.last_mut() {
                        level.in_from = in_from;
                    }
                }
                Class::Operand => {}
            }
            shape.terms = shape.terms.max(on_path);
            if on_path > self.max_terms {
                return Err(Status::invalid_argument(format!(
                    "the query has an expression of more than {} operators (flight_sql.max_expression_terms); \
                     use IN (…) for long lists of values, or split the query",
                    self.max_terms
                )));
            }
        }
        Ok(shape)
    }
}

/// One bracket level of the scan.
#[derive(Debug, Default)]
struct Level {
    operators: usize,
    in_from: bool,
}

/// What a token does to the measures.
enum Class {
    Open,
    Close,
    Comma,
    Operator,
    /// A keyword that starts (`true`) or ends (`false`) a `FROM` list.
    From(bool),
    Operand,
}

fn classify(token: &Token) -> Class {
    match token {
        Token::LParen | Token::LBracket | Token::LBrace => Class::Open,
        Token::RParen | Token::RBracket | Token::RBrace => Class::Close,
        Token::Comma | Token::SemiColon => Class::Comma,
        Token::Word(word) => match word.keyword {
            Keyword::FROM => Class::From(true),
            Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::WINDOW
            | Keyword::QUALIFY
            | Keyword::SELECT => Class::From(false),
            Keyword::AND
            | Keyword::OR
            | Keyword::XOR
            | Keyword::NOT
            | Keyword::IS
            | Keyword::LIKE
            | Keyword::ILIKE
            | Keyword::SIMILAR
            | Keyword::RLIKE
            | Keyword::REGEXP
            | Keyword::IN
            | Keyword::BETWEEN
            | Keyword::COLLATE
            | Keyword::AT
            | Keyword::OVERLAPS
            | Keyword::DIV
            | Keyword::ESCAPE
            | Keyword::UNION
            | Keyword::EXCEPT
            | Keyword::INTERSECT
            | Keyword::MINUS
            | Keyword::JOIN => Class::Operator,
            _ => Class::Operand,
        },
        literal if is_literal(literal) => Class::Operand,
        Token::EOF
        | Token::Whitespace(_)
        | Token::Char(_)
        | Token::Period
        | Token::Colon
        | Token::Placeholder(_)
        | Token::DoubleQuotedString(_) => Class::Operand,
        // Every other token is an operator of some dialect (`+`, `||`, `::`, `->`, …): counted.
        _ => Class::Operator,
    }
}

/// Whether `token` is a literal value (a number or a string of any quoting): what the audit log hides
/// and what the limits count as an operand.
pub(crate) fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SqlLimits = SqlLimits { max_bytes: 1 << 20, max_terms: 1000, max_nesting: 32 };

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    fn refused(sql: &str, setting: &str) {
        let status = LIMITS.check(sql).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(setting), "{}", status.message());
    }

    #[test]
    fn the_shapes_that_overflowed_the_stack_are_refused_before_parsing() {
        refused(&format!("SELECT {}", chain("1", "+", 20_000)), "max_expression_terms");
        refused(&format!("SELECT {}", chain("1", "+", 200_000)), "max_expression_terms");
        refused(
            &format!("SELECT * FROM vitals_raw WHERE {}", chain("heart_rate = 1", " OR ", 20_000)),
            "max_expression_terms",
        );
        refused(&format!("SELECT {}", chain("'a'", "||", 50_000)), "max_expression_terms");
        refused(&format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100)), "max_nesting_depth");
        refused(&"x".repeat((1 << 20) + 1), "max_sql_bytes");
    }

    #[test]
    fn chains_split_by_brackets_or_set_operations_are_measured_along_the_path() {
        // 600 operators outside and 600 inside one bracket: one path of 1200.
        let inner = chain("1", "+", 601);
        refused(&format!("SELECT {} + ({inner})", chain("1", "+", 600)), "max_expression_terms");
        // A comma starts a new list item: each item's chain is short.
        let items = vec![chain("1", "+", 600); 10].join(", ");
        assert_eq!(LIMITS.check(&format!("SELECT {items}")).unwrap().terms, 599);
        refused(&chain("SELECT 1", " UNION ALL ", 1002), "max_expression_terms");
        refused(&format!("SELECT 1 FROM {}", vec!["vitals_raw"; 1002].join(", ")), "max_expression_terms");
    }

    #[test]
    fn long_lists_and_ordinary_queries_pass() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("'P{i:05}'")).collect();
        let sql = format!("SELECT * FROM vitals_clean WHERE patient_id IN ({})", ids.join(", "));
        assert_eq!(LIMITS.check(&sql).unwrap(), SqlShape { terms: 2, nesting: 1 });
        let dashboard = "SELECT patient_id, risk, news2_score, event_time FROM patient_latest \
            WHERE risk = 'High' AND event_time > now() - INTERVAL '15 minutes' ORDER BY news2_score DESC LIMIT 50";
        assert!(LIMITS.check(dashboard).unwrap().terms < 20);
        let etl = include_str!("../etl/vitals_clean.sql");
        let shape = LIMITS.check(etl).unwrap();
        assert!(shape.terms < 200 && shape.nesting < 16, "{shape:?}");
        assert_eq!(LIMITS.check(&chain("1", "+", 1001)).unwrap().terms, 1000);
    }
}
