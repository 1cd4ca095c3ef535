//! Single enqueues combined: jobs enqueued one per call (the API's
//! `POST .../jobs`) by many callers at once are written by one multi-row
//! insert per org, one commit, and one Redis pipeline.
//!
//! A call that finds nothing being written writes its row itself, at once
//! (under light load a call costs what it would alone, with no hand-over
//! between tasks). Otherwise it hands its row to a task per process that
//! takes whatever calls are waiting, up to [`BATCH`], and writes them while
//! the next calls gather; up to [`IN_FLIGHT`] batches are written at once,
//! so under heavy load commits (and their `fsync`) are shared. Each call
//! still returns only after its row is committed and its entry handed to
//! Redis. (A call given up while it writes its own row, as when an HTTP
//! client goes away, may leave a recorded job undispatched: the recovery
//! sweep dispatches it.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tenancy::{Org, OrgId};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::store::NewRow;
use super::{Enqueued, Inner, Job, Jobs, JobsError};

/// Calls waiting to be written; more wait to hand theirs over.
const WAITING: usize = 4096;
/// Rows one statement writes at most.
const BATCH: usize = 256;
/// Batches written at once.
const IN_FLIGHT: usize = 4;

/// Where calls hand their rows over.
pub(super) struct Combiner {
    sender: mpsc::Sender<Pending>,
    /// Writes under way, of batches or of lone calls.
    writing: Arc<AtomicUsize>,
}

/// Counts a write as under way while it lives.
struct Writing(Arc<AtomicUsize>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) struct Pending {
    org: Org,
    row: NewRow,
    reply: oneshot::Sender<Result<Job, JobsError>>,
}

/// Records `row` (a job without a unique key) in `org`'s schema with
/// other callers' rows, and dispatches it.
pub(super) async fn enqueue(jobs: &Jobs, org: &Org, row: NewRow) -> Result<Enqueued, JobsError> {
    let combiner = jobs.inner.combiner.get_or_init(|| start(Arc::downgrade(&jobs.inner)));
    if combiner.writing.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        let _writing = Writing(combiner.writing.clone());
        let job = write_one(jobs, org, row).await?;
        return Ok(Enqueued { job, created: true });
    }
    let (reply, answer) = oneshot::channel();
    if let Err(mpsc::error::SendError(pending)) =
        combiner.sender.send(Pending { org: org.clone(), row, reply }).await
    {
        // The task is gone (its runtime stopped): write this one alone.
        let job = write_one(jobs, &pending.org, pending.row).await?;
        return Ok(Enqueued { job, created: true });
    }
    let job = answer.await.map_err(|_| JobsError::Interrupted)??;
    Ok(Enqueued { job, created: true })
}

fn start(inner: Weak<Inner>) -> Combiner {
    let (sender, receiver) = mpsc::channel(WAITING);
    let writing = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run(inner, receiver, writing.clone()));
    Combiner { sender, writing }
}

/// Ends when the job services are dropped (the sender with them).
async fn run(inner: Weak<Inner>, mut receiver: mpsc::Receiver<Pending>, writing: Arc<AtomicUsize>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A slot first: while every slot is writing, calls gather.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        if receiver.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(inner) = inner.upgrade() else { return };
        let jobs = Jobs { inner };
        writing.fetch_add(1, Ordering::AcqRel);
        let writing = Writing(writing.clone());
        tokio::spawn(async move {
            write(&jobs, batch).await;
            drop((slot, writing));
        });
    }
}

async fn write(jobs: &Jobs, batch: Vec<Pending>) {
    let mut by_org: HashMap<OrgId, (Org, Vec<NewRow>, Vec<Reply>)> = HashMap::new();
    for Pending { org, row, reply } in batch {
        let group = by_org.entry(org.id).or_insert_with(|| (org, Vec::new(), Vec::new()));
        group.2.push(Reply { id: row.id, reply });
        group.1.push(row);
    }
    futures::future::join_all(
        by_org.into_values().map(|(org, rows, replies)| write_org(jobs, org, rows, replies)),
    )
    .await;
}

struct Reply {
    id: Uuid,
    reply: oneshot::Sender<Result<Job, JobsError>>,
}

/// One statement for the org's rows; if it fails and there were several,
/// each row alone, so that a row PostgreSQL refuses (a payload string
/// with `\u0000`, say) fails only its own call.
async fn write_org(jobs: &Jobs, org: Org, rows: Vec<NewRow>, replies: Vec<Reply>) {
    if rows.len() == 1 {
        let mut rows = rows;
        if let (Some(row), Some(reply)) = (rows.pop(), replies.into_iter().next()) {
            let _ = reply.reply.send(write_one(jobs, &org, row).await);
        }
        return;
    }
    match jobs.record(&org, &rows).await {
        Ok(created) => {
            let mut created: HashMap<Uuid, Job> =
                created.into_iter().map(|job| (job.id, job)).collect();
            for Reply { id, reply } in replies {
                let result = created
                    .remove(&id)
                    .ok_or_else(|| JobsError::Invalid("the job was not recorded".into()));
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            tracing::debug!(org_id = %org.id, rows = rows.len(), error = %err, "a combined enqueue failed; writing its rows one by one");
            let writes = rows.into_iter().zip(replies).map(|(row, Reply { reply, .. })| {
                let org = &org;
                async move {
                    let _ = reply.send(write_one(jobs, org, row).await);
                }
            });
            futures::future::join_all(writes).await;
        }
    }
}

async fn write_one(jobs: &Jobs, org: &Org, row: NewRow) -> Result<Job, JobsError> {
    jobs.record(org, std::slice::from_ref(&row))
        .await?
        .pop()
        .ok_or_else(|| JobsError::Invalid("the job was not recorded".into()))
}
