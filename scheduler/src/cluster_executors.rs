//! The scheduler's executors as seen from inside its process: when each was last heard from, how many
//! are alive, and how many a supervisor in this process replaced. `vitalflow up` watches its one
//! executor through it; `/metrics` shows it for every scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

/// Why an executor was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorLoss {
    /// Its task ended while the process was not stopping (an error, a panic, its server failed).
    Ended,
    /// The scheduler heard nothing from it for `scheduler.executor_timeout_seconds`.
    Silent,
}

impl ExecutorLoss {
    /// The label value on `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            ExecutorLoss::Ended => "ended",
            ExecutorLoss::Silent => "silent",
        }
    }
}

/// What `/metrics` shows of the executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecutorCounts {
    /// Registered and heard from within the executor timeout.
    pub alive: usize,
    /// Registered but silent longer than that (the scheduler drops them soon).
    pub silent: usize,
    /// Replaced by a supervisor in this process, because it ended.
    pub replaced_ended: u64,
    /// Replaced because it went silent.
    pub replaced_silent: u64,
}

/// The executors of the Ballista scheduler running in this process.
#[derive(Clone)]
pub struct ClusterExecutors {
    server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    replaced: Arc<[AtomicU64; 2]>,
}

impl std::fmt::Debug for ClusterExecutors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterExecutors").field("scheduler_id", &self.server.scheduler_id).finish()
    }
}

impl ClusterExecutors {
    pub(crate) fn new(server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>) -> ClusterExecutors {
        ClusterExecutors { server, replaced: Arc::default() }
    }

    /// How long an executor may stay silent before it counts as dead (`scheduler.executor_timeout_seconds`).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.server.state.config.executor_timeout_seconds)
    }

    /// When the scheduler last heard from the executor serving Flight on `flight_port` (a poll for work
    /// is its heartbeat), to the second; `None` while it is not registered (not yet, or dropped as dead).
    pub async fn last_heard(&self, flight_port: u16) -> Option<SystemTime> {
        let executors = self.server.state.executor_manager.get_executors_state().await.ok()?;
        executors
            .into_iter()
            .filter(|(metadata, _, _)| metadata.port == flight_port)
            .filter_map(|(_, heartbeat, _)| heartbeat)
            .max()
            .map(|since_epoch| UNIX_EPOCH + since_epoch)
    }

    /// Counts a replacement of an executor lost for `loss`.
    pub fn record_replaced(&self, loss: ExecutorLoss) {
        self.replaced[loss as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The executors now, and the replacements so far.
    pub async fn counts(&self) -> ExecutorCounts {
        let mut counts = ExecutorCounts {
            replaced_ended: self.replaced[ExecutorLoss::Ended as usize].load(Ordering::Relaxed),
            replaced_silent: self.replaced[ExecutorLoss::Silent as usize].load(Ordering::Relaxed),
            ..ExecutorCounts::default()
        };
        let Ok(executors) = self.server.state.executor_manager.get_executors_state().await else { return counts };
        let timeout = self.timeout();
        for (_, heartbeat, _) in executors {
            // A heartbeat stamped later than our clock reads (whole seconds) is fresh.
            let silent = heartbeat.is_none_or(|since_epoch| {
                SystemTime::now().duration_since(UNIX_EPOCH + since_epoch).is_ok_and(|silence| silence > timeout)
            });
            if silent {
                counts.silent += 1;
            } else {
                counts.alive += 1;
            }
        }
        counts
    }
}
