//! Single enqueues combined: jobs enqueued one per call (the API's
//! `POST .../jobs`) by many callers at once are written by one multi-row
//! insert per org, one commit, and one Redis pipeline.
//!
//! A task per process takes whatever calls are waiting, up to [`BATCH`],
//! and writes them while the next calls gather; up to [`IN_FLIGHT`] batches
//! are written at once. Nothing waits for company: a lone call is written
//! as soon as it arrives, so under light load a call costs what it did
//! alone, and under heavy load commits (and their `fsync`) are shared.
//! Each call still returns only after its row is committed and its entry
//! handed to Redis.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tenancy::{Org, OrgId};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::store::{self, NewRow};
use super::{Enqueued, Inner, Job, Jobs, JobsError};

/// Calls waiting to be written; more wait to hand theirs over.
const WAITING: usize = 4096;
/// Rows one statement writes at most.
const BATCH: usize = 256;
/// Batches written at once.
const IN_FLIGHT: usize = 4;

/// Where calls hand their rows over.
pub(super) type Sender = mpsc::Sender<Pending>;

pub(super) struct Pending {
    org: Org,
    row: NewRow,
    reply: oneshot::Sender<Result<Job, JobsError>>,
}

/// Records `row` (a job without a unique key) in `org`'s schema with
/// other callers' rows, and dispatches it.
pub(super) async fn enqueue(jobs: &Jobs, org: &Org, row: NewRow) -> Result<Enqueued, JobsError> {
    let sender = jobs.inner.combiner.get_or_init(|| start(Arc::downgrade(&jobs.inner)));
    let (reply, answer) = oneshot::channel();
    if let Err(mpsc::error::SendError(pending)) =
        sender.send(Pending { org: org.clone(), row, reply }).await
    {
        // The task is gone (its runtime stopped): write this one alone.
        let job = write_one(jobs, &pending.org, pending.row).await?;
        return Ok(Enqueued { job, created: true });
    }
    let job = answer.await.map_err(|_| JobsError::Interrupted)??;
    Ok(Enqueued { job, created: true })
}

fn start(inner: Weak<Inner>) -> Sender {
    let (sender, receiver) = mpsc::channel(WAITING);
    tokio::spawn(run(inner, receiver));
    sender
}

/// Ends when the job services are dropped (the sender with them).
async fn run(inner: Weak<Inner>, mut receiver: mpsc::Receiver<Pending>) {
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
        tokio::spawn(async move {
            write(&jobs, batch).await;
            drop(slot);
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
    match store::insert(&jobs.inner.pool, &org.schema(), &rows).await {
        Ok(created) => {
            jobs.dispatch_recorded(org.id, &created).await;
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
    let job = store::insert(&jobs.inner.pool, &org.schema(), std::slice::from_ref(&row))
        .await?
        .pop()
        .ok_or_else(|| JobsError::Invalid("the job was not recorded".into()))?;
    jobs.dispatch_recorded(org.id, std::slice::from_ref(&job)).await;
    Ok(job)
}
