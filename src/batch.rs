//! Many requests' reads in one database round trip.
//!
//! On PostgreSQL a read costs a hand-off to the blocking pool, a round trip
//! and a wake-up back, each far dearer than the query itself. A [`Batcher`]
//! queues the questions of concurrent requests; a drain, running with one
//! pooled connection on the blocking pool, takes everything queued and
//! answers it with one query, then takes what arrived meanwhile, until the
//! queue is empty. Alone, a request waits for nothing; under load a batch
//! holds as many requests as arrived during the previous one.
//!
//! Every question is asked after its request arrived, and its batch's query
//! begins after the question was queued: an answer is as fresh as a read of
//! its own.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::db::DbConnection;
use crate::error::Error;

/// The most questions one query answers.
pub const MAX_BATCH: usize = 256;

/// Drains running at once (each holds a pooled connection while it works).
const MAX_DRAINS: usize = 2;

/// Batches a drain answers on one connection before it gives the connection
/// back (and asks for one again), so that under a steady stream of questions
/// writes and other reads still get their turn at the pool.
const BATCHES_PER_CONNECTION: usize = 16;

/// Answers every question of a batch, in order.
pub type Answer<Q, A> = fn(&mut DbConnection, &[Q]) -> Result<Vec<A>, Error>;

type Waiting<Q, A> = (Q, oneshot::Sender<Result<A, Error>>);

struct Queue<Q, A> {
    waiting: Vec<Waiting<Q, A>>,
    drains: usize,
}

pub struct Batcher<Q, A> {
    queue: Mutex<Queue<Q, A>>,
    answer: Answer<Q, A>,
}

impl<Q, A> std::fmt::Debug for Batcher<Q, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<Q: Send, A: Send> Batcher<Q, A> {
    pub fn new(answer: Answer<Q, A>) -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                drains: 0,
            }),
            answer,
        }
    }

    /// Queues `question` and waits for its answer. `start_drain` is called
    /// when another drain should run: it must arrange for [`Batcher::drain`]
    /// to be called with a connection, or for [`Batcher::fail`] if none can
    /// be had.
    pub async fn ask(&self, question: Q, start_drain: impl FnOnce()) -> Result<A, Error> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.lock();
            queue.waiting.push((question, reply));
            let start = queue.drains < MAX_DRAINS;
            queue.drains += usize::from(start);
            start
        };
        if start {
            start_drain();
        }
        answer
            .await
            .map_err(|_| Error::Internal("a batch ended without an answer".into()))?
    }

    /// Answers what is queued, batch after batch, until nothing is left
    /// (`false`: this drain is over) or [`BATCHES_PER_CONNECTION`] batches
    /// are done (`true`: call again, with a connection asked for anew).
    pub fn drain(&self, conn: &mut DbConnection) -> bool {
        // Counts this drain out if it ends early (a panic); a question queued
        // after that starts another.
        struct Running<'a, Q, A>(Option<&'a Batcher<Q, A>>);
        impl<Q, A> Drop for Running<'_, Q, A> {
            fn drop(&mut self) {
                if let Some(batcher) = self.0 {
                    let mut queue = batcher.queue.lock().unwrap_or_else(|e| e.into_inner());
                    queue.drains = queue.drains.saturating_sub(1);
                }
            }
        }
        let mut running = Running(Some(self));
        for _ in 0..BATCHES_PER_CONNECTION {
            let batch: Vec<Waiting<Q, A>> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    // Under the lock that `ask` takes: a question queued from
                    // now on sees one drain fewer and starts its own.
                    queue.drains = queue.drains.saturating_sub(1);
                    running.0 = None;
                    return false;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let (questions, replies): (Vec<Q>, Vec<_>) = batch.into_iter().unzip();
            match (self.answer)(conn, &questions) {
                Ok(answers) if answers.len() == replies.len() => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Ok(_) => {
                    let error = Error::Internal("a batch answered the wrong count".into());
                    fail_all(replies, &error);
                }
                Err(error) => fail_all(replies, &error),
            }
        }
        // Still counted as running: the caller drains again.
        running.0 = None;
        true
    }

    /// A drain could not start (no connection): everything queued fails.
    pub fn fail(&self, error: &Error) {
        let replies: Vec<_> = {
            let mut queue = self.lock();
            queue.drains = queue.drains.saturating_sub(1);
            queue.waiting.drain(..).map(|(_, reply)| reply).collect()
        };
        fail_all(replies, error);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<Q, A>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Each waiter gets the batch's error: what a read of its own would have
/// met (the database unavailable, or an internal error).
fn fail_all<A>(replies: Vec<oneshot::Sender<Result<A, Error>>>, error: &Error) {
    for reply in replies {
        let copy = match error {
            Error::Unavailable(message) => Error::Unavailable(message.clone()),
            other => Error::Internal(other.to_string()),
        };
        let _ = reply.send(Err(copy));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use diesel::Connection;

    use super::*;

    fn double(_: &mut DbConnection, questions: &[u32]) -> Result<Vec<u32>, Error> {
        Ok(questions.iter().map(|q| q * 2).collect())
    }

    fn connection() -> DbConnection {
        DbConnection::establish(":memory:").unwrap()
    }

    #[actix_rt::test]
    async fn questions_queued_together_are_answered_in_one_batch_each_its_own() {
        let batcher = Rc::new(Batcher::new(double));
        let starts = Rc::new(Cell::new(0));
        let asks: Vec<_> = (0..40u32)
            .map(|n| {
                let (batcher, starts) = (Rc::clone(&batcher), Rc::clone(&starts));
                actix_rt::spawn(
                    async move { batcher.ask(n, || starts.set(starts.get() + 1)).await },
                )
            })
            .collect();
        while batcher.lock().waiting.len() < 40 {
            actix_rt::task::yield_now().await;
        }
        assert_eq!(
            starts.get(),
            MAX_DRAINS,
            "at most {MAX_DRAINS} drains start"
        );
        let mut conn = connection();
        assert!(!batcher.drain(&mut conn), "one batch answers them all");
        assert!(!batcher.drain(&mut conn));
        for (n, ask) in asks.into_iter().enumerate() {
            assert_eq!(ask.await.unwrap().unwrap(), n as u32 * 2);
        }
        // Both drains are over: the next question starts one again.
        let again = {
            let batcher = Rc::clone(&batcher);
            let starts = Rc::clone(&starts);
            actix_rt::spawn(async move { batcher.ask(5, || starts.set(starts.get() + 1)).await })
        };
        while batcher.lock().waiting.is_empty() {
            actix_rt::task::yield_now().await;
        }
        assert_eq!(starts.get(), MAX_DRAINS + 1);
        batcher.drain(&mut conn);
        assert_eq!(again.await.unwrap().unwrap(), 10);
    }

    #[actix_rt::test]
    async fn a_drain_that_cannot_start_fails_what_waits() {
        let batcher = Rc::new(Batcher::new(double));
        let asks: Vec<_> = (0..3u32)
            .map(|n| {
                let batcher = Rc::clone(&batcher);
                actix_rt::spawn(async move { batcher.ask(n, || {}).await })
            })
            .collect();
        while batcher.lock().waiting.len() < 3 {
            actix_rt::task::yield_now().await;
        }
        batcher.fail(&Error::Unavailable("down".into()));
        batcher.fail(&Error::Unavailable("down".into()));
        for ask in asks {
            assert!(matches!(ask.await.unwrap(), Err(Error::Unavailable(_))));
        }
        let next = {
            let batcher = Rc::clone(&batcher);
            actix_rt::spawn(async move { batcher.ask(1, || {}).await })
        };
        while batcher.lock().waiting.is_empty() {
            actix_rt::task::yield_now().await;
        }
        assert!(!batcher.drain(&mut connection()));
        assert_eq!(next.await.unwrap().unwrap(), 2);
    }

    #[actix_rt::test]
    async fn a_drain_gives_its_connection_back_after_a_while() {
        let batcher = Rc::new(Batcher::new(double));
        let total = MAX_BATCH * BATCHES_PER_CONNECTION + 1;
        let asks: Vec<_> = (0..total as u32)
            .map(|n| {
                let batcher = Rc::clone(&batcher);
                actix_rt::spawn(async move { batcher.ask(n, || {}).await })
            })
            .collect();
        while batcher.lock().waiting.len() < total {
            actix_rt::task::yield_now().await;
        }
        let mut conn = connection();
        assert!(batcher.drain(&mut conn), "more is left: call again");
        assert!(!batcher.drain(&mut conn), "then it is over");
        for (n, ask) in asks.into_iter().enumerate() {
            assert_eq!(ask.await.unwrap().unwrap(), n as u32 * 2);
        }
    }
}
