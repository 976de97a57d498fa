//! Group commit for every stored message (REST creates and XMPP `save_to_history`): every
//! message waiting when the writer is free goes into one transaction, checked one by one so a
//! refusal touches only its sender, written with one set-based statement, and committed once;
//! each sender hears back only once its message is durable. A batch the database refuses as a
//! whole (a conflict between two of its messages, a deadlock) is retried one message per
//! transaction, so one bad message never sinks the others.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use futures_util::FutureExt;

use tokio::sync::{mpsc, oneshot};

use super::messages::{NewMessage, Stored};
use super::{Actor, Chat, ChatError};
use crate::ops::telemetry::{
    DB_QUERY_DURATION, HISTORY_BATCH_SIZE, MESSAGES_STORED, MESSAGE_STORE_DURATION,
};

struct Job {
    actor: Actor,
    new: NewMessage,
    done: oneshot::Sender<Result<Stored, ChatError>>,
}

/// The writer's queue; the writer task starts on first use, on the caller's runtime.
#[derive(Default)]
pub(super) struct Writer {
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl Chat {
    /// Stores a message through the group-commit writer and returns once it is committed
    /// (then publishes what `send_to_chat` asks for, like `create_message`).
    pub async fn store_message(&self, actor: &Actor, new: NewMessage) -> Result<Stored, ChatError> {
        let queue = self.inner.writer.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.inner.config.history_batch_max.max(1) * 4);
            tokio::spawn(run(self.clone(), rx));
            tx
        });
        let (done, result) = oneshot::channel();
        let started = std::time::Instant::now();
        queue
            .send(Job {
                actor: actor.clone(),
                new,
                done,
            })
            .await
            .map_err(|_| ChatError::Unavailable("the history writer has stopped".into()))?;
        let stored = result
            .await
            .map_err(|_| ChatError::Unavailable("the history writer has stopped".into()))?;
        metrics::histogram!(MESSAGE_STORE_DURATION).record(started.elapsed());
        stored
    }

    async fn commit_batch(&self, batch: Vec<Job>) {
        metrics::histogram!(HISTORY_BATCH_SIZE).record(batch.len() as f64);
        match self.try_batch(&batch).await {
            Ok(results) => {
                for (job, r) in batch.into_iter().zip(results) {
                    self.finish(job, r);
                }
            }
            Err(e) if batch.len() > 1 => {
                tracing::debug!(error = %e, size = batch.len(), "history batch retried one by one");
                for job in batch {
                    let r = match self.try_batch(std::slice::from_ref(&job)).await {
                        Ok(mut r) => r.pop().unwrap_or_else(|| Err(e.clone_as_unavailable())),
                        Err(e) => Err(e),
                    };
                    self.finish(job, r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "history write failed");
                for job in batch {
                    self.finish(job, Err(e.clone_as_unavailable()));
                }
            }
        }
    }

    /// One transaction for `batch`: per-message outcomes if it committed.
    async fn try_batch(&self, batch: &[Job]) -> Result<Vec<Result<Stored, ChatError>>, ChatError> {
        let started = std::time::Instant::now();
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        let jobs: Vec<(&Actor, &NewMessage)> = batch.iter().map(|j| (&j.actor, &j.new)).collect();
        let results = self.store_many(&tx, &jobs).await?;
        tx.commit().await?;
        let elapsed = started.elapsed();
        metrics::histogram!(DB_QUERY_DURATION, "query" => "history_batch").record(elapsed);
        tracing::debug!(size = batch.len(), ?elapsed, "message batch committed");
        Ok(results)
    }

    fn finish(&self, job: Job, r: Result<Stored, ChatError>) {
        if let Ok(stored) = &r {
            metrics::counter!(MESSAGES_STORED).increment(1);
            self.after_store(&job.actor, &job.new, stored);
        }
        let _ = job.done.send(r);
    }
}

async fn run(chat: Chat, mut rx: mpsc::Receiver<Job>) {
    let max = chat.inner.config.history_batch_max.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Senders woken by the last commit may not have run yet (on a busy or single-threaded
        // runtime they queue behind this task): let them, while each pass still brings more.
        loop {
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.len() >= max {
                break;
            }
            tokio::task::yield_now().await;
            if rx.is_empty() {
                break;
            }
        }
        // A panic while storing one batch must not stop the writer for everyone: that batch's
        // senders get an error (their replies are dropped, nothing was acknowledged) and the
        // writer goes on with the next batch.
        if AssertUnwindSafe(chat.commit_batch(batch))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(
                "the history writer panicked on a batch; its senders were told it failed"
            );
        }
    }
}
