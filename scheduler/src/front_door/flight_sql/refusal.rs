//! The Flight SQL calls vitalflow refuses, each with its own reason: it is read-only (updates, bulk
//! ingest), runs every query on its own (no transactions or savepoints) and takes SQL, not
//! Substrait plans. The SqlInfo it sends says the same, so well-behaved clients never ask.

use tonic::Status;

use super::statement_policy::READ_ONLY;

/// A refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BeginTransaction,
    EndTransaction,
    BeginSavepoint,
    EndSavepoint,
    /// GetFlightInfo or DoPut of a Substrait plan.
    SubstraitPlan,
    /// CreatePreparedSubstraitPlan.
    PreparedSubstraitPlan,
    /// DoPut of an update statement.
    StatementUpdate,
    /// DoPut of a prepared update statement.
    PreparedStatementUpdate,
    /// DoPut of a table (bulk ingest).
    Ingest,
}

impl Refusal {
    /// The call, as the audit log records it.
    pub(crate) fn call(self) -> &'static str {
        match self {
            Refusal::BeginTransaction => "Flight SQL action BeginTransaction",
            Refusal::EndTransaction => "Flight SQL action EndTransaction",
            Refusal::BeginSavepoint => "Flight SQL action BeginSavepoint",
            Refusal::EndSavepoint => "Flight SQL action EndSavepoint",
            Refusal::SubstraitPlan => "Flight SQL Substrait plan",
            Refusal::PreparedSubstraitPlan => "Flight SQL action CreatePreparedSubstraitPlan",
            Refusal::StatementUpdate => "Flight SQL DoPut CommandStatementUpdate",
            Refusal::PreparedStatementUpdate => "Flight SQL DoPut CommandPreparedStatementUpdate",
            Refusal::Ingest => "Flight SQL DoPut CommandStatementIngest",
        }
    }

    /// The answer: UNIMPLEMENTED for what the server does not offer, PERMISSION_DENIED for writes
    /// (as for write statements sent as queries).
    pub(crate) fn status(self) -> Status {
        match self {
            Refusal::BeginTransaction | Refusal::EndTransaction | Refusal::BeginSavepoint | Refusal::EndSavepoint => {
                Status::unimplemented(
                    "transactions and savepoints are not supported: vitalflow's Flight SQL is read-only and runs \
                     every query on its own (auto-commit); send queries without BeginTransaction",
                )
            }
            Refusal::SubstraitPlan | Refusal::PreparedSubstraitPlan => Status::unimplemented(
                "Substrait plans are not accepted: send the query as SQL (CommandStatementQuery or a prepared statement)",
            ),
            Refusal::StatementUpdate | Refusal::PreparedStatementUpdate => {
                Status::permission_denied(format!("updates are refused: {READ_ONLY}"))
            }
            Refusal::Ingest => Status::permission_denied(format!(
                "bulk ingest (DoPut of a table) is refused: {READ_ONLY}; readings arrive through Kafka"
            )),
        }
    }
}

/// The answer to a DoPut of a command that is neither a write nor a prepared statement's parameters.
pub(crate) fn put_not_supported(type_url: &str) -> Status {
    Status::invalid_argument(format!(
        "DoPut of {type_url} is not supported: DoPut binds the parameters of a prepared statement"
    ))
}
