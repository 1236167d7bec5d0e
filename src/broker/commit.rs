//! The commit thread: syncs what the writer wrote, then releases the
//! acknowledgements that wait for it.
//!
//! The writer appends, writes and publishes a batch, hands each touched
//! log's sync job (with the durable acknowledgements that wait for it) to
//! this stage and goes on with the next batch at once: the sync of batch N
//! runs while batch N+1 is appended. Jobs of one log that arrive while a
//! sync runs are merged, so each sync covers everything that waited for it
//! (group commit that grows with the load). Under `interval:MS` the stage
//! syncs every MS milliseconds whether or not new writes arrive; under
//! `none` it only writes index entries and seals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::writer::Completion;
use super::{storage_to_wire, Broker};
use crate::storage::{Durability, SyncJob};

/// What waits for one log's next sync.
#[derive(Debug, Default)]
struct Work {
    job: Option<SyncJob>,
    acks: Vec<Completion>,
}

/// The queue between the writer and the commit thread, and the thread's
/// parking state.
#[derive(Debug)]
pub struct CommitStage {
    broker: Arc<Broker>,
    durability: Durability,
    work: Mutex<HashMap<u64, Work>>,
    thread: Mutex<Option<std::thread::Thread>>,
    sleeping: AtomicBool,
    finishing: AtomicBool,
}

/// How long an idle commit thread sleeps before it looks again.
const IDLE_PARK: Duration = Duration::from_millis(100);

/// Most time written records wait for a sync when no acknowledgement waits
/// for it (under `batch` and `none`): fewer syncs of a trickle of publishes
/// keep the sync work off the path of deliveries.
const LAZY_SYNC: Duration = Duration::from_millis(20);

impl CommitStage {
    /// A stage for logs kept under `durability`.
    pub fn new(broker: Arc<Broker>, durability: Durability) -> CommitStage {
        CommitStage {
            broker,
            durability,
            work: Mutex::new(HashMap::new()),
            thread: Mutex::new(None),
            sleeping: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Work>> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over channel `channel`'s sync job (if any) and the
    /// acknowledgements that must wait until it ran: acknowledgements
    /// without a job wait for the job of that log that runs now, if any.
    pub fn submit(&self, channel: u64, job: Option<SyncJob>, acks: Vec<Completion>) {
        if job.is_none() && acks.is_empty() {
            return;
        }
        let wake = !acks.is_empty();
        let was_empty = {
            let mut work = self.lock();
            let was_empty = work.is_empty();
            let w = work.entry(channel).or_default();
            match (&mut w.job, job) {
                (Some(j), Some(later)) => j.merge(later),
                (slot @ None, Some(later)) => *slot = Some(later),
                (_, None) => {}
            }
            w.acks.extend(acks);
            was_empty
        };
        // Under `interval` the thread wakes on its own clock. Otherwise it
        // wakes at once for acknowledgements that wait, and for the first
        // job of an idle stage (which it syncs within `LAZY_SYNC`).
        if !matches!(self.durability, Durability::Interval { .. }) && (wake || was_empty) {
            self.unpark();
        }
    }

    fn unpark(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = &*self.thread.lock().unwrap_or_else(|p| p.into_inner()) {
                t.unpark();
            }
        }
    }

    /// Asks the thread to finish: it runs what is queued and returns.
    pub fn finish(&self) {
        self.finishing.store(true, Ordering::SeqCst);
        if let Some(t) = &*self.thread.lock().unwrap_or_else(|p| p.into_inner()) {
            t.unpark();
        }
    }

    /// Runs the commit thread until [`finish`](Self::finish) and an empty queue.
    pub fn run(&self) {
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current());
        let interval = match self.durability {
            Durability::Interval { ms } => Some(Duration::from_millis(ms.max(1))),
            _ => None,
        };
        let mut last_round = Instant::now();
        loop {
            let finishing = self.finishing.load(Ordering::SeqCst);
            let (due, wait) = match interval {
                Some(i) => (
                    last_round.elapsed() >= i,
                    i.saturating_sub(last_round.elapsed()),
                ),
                // Acknowledgements that wait are synced at once; work nobody
                // waits for (index points, the committed head) within
                // `LAZY_SYNC`, so a trickle of publishes does not cost one
                // sync each.
                None => {
                    let work = self.lock();
                    if work.is_empty() {
                        (false, IDLE_PARK)
                    } else if work.values().any(|w| !w.acks.is_empty()) {
                        (true, Duration::ZERO)
                    } else {
                        let left = LAZY_SYNC.saturating_sub(last_round.elapsed());
                        (left.is_zero(), left)
                    }
                }
            };
            if finishing || due {
                let round = std::mem::take(&mut *self.lock());
                last_round = Instant::now();
                if !round.is_empty() {
                    self.run_round(round);
                    continue;
                }
                if finishing {
                    return;
                }
            }
            self.sleeping.store(true, Ordering::SeqCst);
            // What arrived since the decision above (an unpark may have
            // come before `sleeping` was set).
            let skip = {
                let work = self.lock();
                work.values().any(|w| !w.acks.is_empty()) || (wait >= IDLE_PARK && !work.is_empty())
            };
            if !skip && !self.finishing.load(Ordering::SeqCst) {
                std::thread::park_timeout(wait.max(Duration::from_micros(100)));
            }
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }

    /// Runs one round: every log's job, then its acknowledgements (turned
    /// into failures when its sync failed).
    fn run_round(&self, round: HashMap<u64, Work>) {
        let threads = self.broker.io_links.len();
        let mut outbox: Vec<Vec<Completion>> = (0..threads).map(|_| Vec::new()).collect();
        for (channel, work) in round {
            let failed = match work.job {
                None => None,
                Some(job) => match job.run(false) {
                    Ok(_) => None,
                    Err(e) => {
                        tracing::error!(channel, error = %e, "sync failed; the log refuses further writes");
                        Some(storage_to_wire(e))
                    }
                },
            };
            for ack in work.acks {
                let ack = match &failed {
                    None => ack,
                    Some(e) => ack.into_failure(e.code, e.message.clone()),
                };
                if let Some(out) = outbox.get_mut(ack.conn().thread) {
                    out.push(ack);
                }
            }
        }
        self.broker.push_completions(&mut outbox);
        // Committed heads moved: subscribers that see only committed
        // records, and parked HTTP polls, may have something new.
        self.broker.wake_all_io();
    }
}
