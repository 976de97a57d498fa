//! Group commit for messages stored from XMPP (`save_to_history`): every message waiting when
//! the writer is free goes into one transaction, each inside its own savepoint so one refusal
//! cannot undo the others; each sender hears back only once its message is durable.

use std::sync::OnceLock;

use tokio::sync::{mpsc, oneshot};

use super::messages::{NewMessage, Stored};
use super::{Actor, Chat, ChatError};

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
        queue
            .send(Job {
                actor: actor.clone(),
                new,
                done,
            })
            .await
            .map_err(|_| ChatError::Unavailable("the history writer has stopped".into()))?;
        result
            .await
            .map_err(|_| ChatError::Unavailable("the history writer has stopped".into()))?
    }

    async fn commit_batch(&self, batch: Vec<Job>) {
        let mut results = Vec::with_capacity(batch.len());
        let outcome = async {
            let mut client = self.pool().get().await?;
            let mut tx = client.transaction().await?;
            for job in batch {
                let sp = tx.transaction().await?;
                let r = self.store_in(&sp, &job.actor, &job.new).await;
                match r {
                    Ok(_) => sp.commit().await?,
                    Err(_) => sp.rollback().await?,
                }
                results.push((job, r));
            }
            tx.commit().await?;
            Ok::<_, ChatError>(())
        }
        .await;
        match outcome {
            Ok(()) => {
                for (job, r) in results {
                    if let Ok(stored) = &r {
                        self.after_store(&job.actor, &job.new, stored);
                    }
                    let _ = job.done.send(r);
                }
            }
            Err(e) => {
                // Nothing of the batch was committed: every sender hears so.
                let why = e.to_string();
                tracing::error!(error = %why, "history batch failed");
                for (job, _) in results {
                    let _ = job.done.send(Err(ChatError::Unavailable(why.clone())));
                }
            }
        }
    }
}

async fn run(chat: Chat, mut rx: mpsc::Receiver<Job>) {
    let max = chat.inner.config.history_batch_max.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        chat.commit_batch(batch).await;
    }
}
