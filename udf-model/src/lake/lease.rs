//! A lease in the lake: one holder at a time for a role (the ETL driver of a data location), with an
//! expiry, kept in a small Delta table of its own (`_leases/<role>`). Each acquisition or renewal is
//! a commit carrying the application transaction `(lease, epoch)` and the holder and expiry as commit
//! metadata; Delta's atomic commits and its conflict check on the same application id make two
//! concurrent acquisitions (or a renewal racing a takeover) end with exactly one winner. No lock
//! service: the object store's put-if-absent is enough, on a directory and on S3.

use std::collections::HashMap;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;
use crate::lake::table::{LakeTable, Transaction};

/// The application id of lease commits.
const LEASE_APP: &str = "vitalflow-lease";

/// Who holds a lease, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's name (host, process id, a random part).
    pub owner: String,
    /// When the lease runs out unless renewed, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    table: LakeTable,
    owner: String,
    epoch: i64,
    ttl: Duration,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Lease {
    /// Takes the lease of `role` for `owner` for `ttl` if nobody else holds it unexpired; otherwise
    /// returns who holds it.
    pub async fn try_acquire(
        location: &DataLocation,
        role: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, LeaseHolder>> {
        let schema = Arc::new(Schema::new(vec![Field::new("unused", DataType::Boolean, true)]));
        let mut table = LakeTable::open_or_create(location, &format!("_leases/{role}"), &schema).await?;
        table.refresh().await?;
        if let Some(holder) = holder(&table).await?
            && holder.owner != owner
            && holder.expires_at_ms > now_ms()
        {
            return Ok(Err(holder));
        }
        let epoch = table.txn_version(LEASE_APP).await?.unwrap_or(0) + 1;
        let mut lease = Lease { table, owner: owner.to_string(), epoch, ttl };
        match lease.commit().await {
            Ok(()) => Ok(Ok(lease)),
            Err(LakeError::Conflict { .. }) => {
                lease.table.refresh().await?;
                let holder = holder(&lease.table).await?.unwrap_or(LeaseHolder { owner: "?".into(), expires_at_ms: 0 });
                Ok(Err(holder))
            }
            Err(e) => Err(e),
        }
    }

    /// Extends the lease by its time to live; `false` when it was lost (taken over after expiring).
    pub async fn renew(&mut self) -> Result<bool> {
        match self.commit().await {
            Ok(()) => Ok(true),
            Err(LakeError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (a clean stop): a standby, or this role restarted, takes it at once.
    pub async fn release(mut self) -> Result<()> {
        self.ttl = Duration::ZERO;
        match self.commit().await {
            Ok(()) | Err(LakeError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn commit(&mut self) -> Result<()> {
        let expires = now_ms() + self.ttl.as_millis() as i64;
        let metadata = HashMap::from([
            ("leaseOwner".to_string(), serde_json::Value::from(self.owner.clone())),
            ("leaseExpiresAtMs".to_string(), serde_json::Value::from(expires)),
        ]);
        self.table.append_with_metadata(&[], vec![Transaction::new(LEASE_APP, self.epoch)], metadata).await?;
        Ok(())
    }
}

/// The holder recorded by the table's latest commit; `None` before any.
async fn holder(table: &LakeTable) -> Result<Option<LeaseHolder>> {
    if table.version() == 0 {
        return Ok(None);
    }
    let Some(summary) = table.commit_summary(table.version()).await? else { return Ok(None) };
    let owner = summary.metadata.get("leaseOwner").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let expires_at_ms = summary.metadata.get("leaseExpiresAtMs").and_then(|v| v.as_i64()).unwrap_or(0);
    Ok(Some(LeaseHolder { owner, expires_at_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_takeover_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let ttl = Duration::from_millis(300);
        let mut first = Lease::try_acquire(&location, "etl", "a", ttl).await.unwrap().unwrap();
        let refused = Lease::try_acquire(&location, "etl", "b", ttl).await.unwrap().unwrap_err();
        assert_eq!(refused.owner, "a");
        assert!(first.renew().await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Expired: b takes over, and a's next renewal finds it lost.
        let mut second = Lease::try_acquire(&location, "etl", "b", ttl).await.unwrap().unwrap();
        assert!(!first.renew().await.unwrap());
        assert!(second.renew().await.unwrap());
        // Released: taken at once, although its time to live had not run out.
        second.release().await.unwrap();
        Lease::try_acquire(&location, "etl", "c", Duration::from_secs(60)).await.unwrap().unwrap();
    }
}
