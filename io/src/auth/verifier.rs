//! Password verification off the event loop. An Argon2 verification takes tens of milliseconds by design; run on
//! the event loop, every uncached login would stall every other client for that long (a reconnect storm of a
//! thousand devices: half a minute). Instead the authenticator answers `AuthDecision::Pending` and hands the job
//! to a small pool of threads; a finished job is a verdict in a channel and a wake-up of the poller, and the driver
//! feeds it to the core as `Input::AuthDecided`. No async runtime: std threads, std channels, one `mio::Waker`.

use super::cache::VerifiedCache;
use super::passwd;
use mqtt_core::broker::{AuthDecision, ConnectionId};
use mqtt_core::packet::ReasonCode;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// One password to verify for one CONNECT.
pub(super) struct Job {
    pub conn: ConnectionId,
    pub user: String,
    pub phc: String,
    pub password: Vec<u8>,
    /// Where a verified password is remembered: the cache of the authenticator that asked (after a SIGHUP reload,
    /// possibly one no longer in use, which is harmless).
    pub cache: Arc<Mutex<VerifiedCache>>,
    pub queued_at: Instant,
    /// The user is not in the password file: `phc` is a stand-in, verified only so that the refusal takes as long
    /// as any other; the verdict is always a refusal.
    pub unknown_user: bool,
}

/// The verdict on one job, for the driver to deliver.
#[derive(Debug)]
pub struct Verdict {
    pub conn: ConnectionId,
    pub decision: AuthDecision,
}

/// Where authenticators send jobs (cloned into each authenticator loaded, so a reload keeps the same pool).
#[derive(Clone)]
pub struct VerifyQueue {
    jobs: Sender<Job>,
}

impl VerifyQueue {
    /// Queues `job`; gives it back if the pool is gone.
    pub(super) fn submit(&self, job: Job) -> Result<(), Job> {
        self.jobs.send(job).map_err(|mpsc::SendError(job)| job)
    }
}

/// The pool: its threads, the verdicts they produce, and the waker they ring.
pub struct Verifier {
    queue: VerifyQueue,
    verdicts: Receiver<Verdict>,
    waker: Arc<OnceLock<Arc<mio::Waker>>>,
}

impl Verifier {
    /// Threads for `threads` concurrent verifications (half the cores, at least one, is the broker's default:
    /// each takes a core and Argon2's memory while it runs). A job that waited longer than `max_wait` is skipped:
    /// its connection has been closed by the connect timeout already.
    pub fn start(threads: usize, max_wait: Duration) -> io::Result<Verifier> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (verdict_tx, verdicts) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let waker: Arc<OnceLock<Arc<mio::Waker>>> = Arc::new(OnceLock::new());
        for i in 0..threads.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let verdict_tx = verdict_tx.clone();
            let waker = Arc::clone(&waker);
            thread::Builder::new()
                .name(format!("verify-{i}"))
                .spawn(move || work(&job_rx, &verdict_tx, &waker, max_wait))?;
        }
        Ok(Verifier {
            queue: VerifyQueue { jobs },
            verdicts,
            waker,
        })
    }

    /// The default number of threads: half the cores, at least one.
    pub fn default_threads() -> usize {
        thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    pub fn queue(&self) -> VerifyQueue {
        self.queue.clone()
    }

    /// The waker the threads ring after each verdict (set once, by the driver that owns the poller).
    pub fn set_waker(&self, waker: Arc<mio::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// The next verdict ready, if any.
    pub fn try_verdict(&self) -> Option<Verdict> {
        self.verdicts.try_recv().ok()
    }
}

fn work(
    jobs: &Mutex<Receiver<Job>>,
    verdicts: &Sender<Verdict>,
    waker: &OnceLock<Arc<mio::Waker>>,
    max_wait: Duration,
) {
    loop {
        // A poisoned lock means another worker panicked while waiting for a job; the receiver is still sound.
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            // Every queue is gone: the broker is shutting down.
            Err(_) => return,
        };
        if job.queued_at.elapsed() > max_wait {
            continue;
        }
        let decision = verdict(&job);
        if verdicts
            .send(Verdict {
                conn: job.conn,
                decision,
            })
            .is_err()
        {
            return;
        }
        if let Some(waker) = waker.get() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the event loop for a login verdict: {e}");
            }
        }
    }
}

/// Verifies one job, remembering a verified password in the cache as a synchronous check does.
pub(super) fn verdict(job: &Job) -> AuthDecision {
    let verified = passwd::verify(&job.phc, &job.password);
    if verified && !job.unknown_user {
        job.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(&job.user, &job.phc, &job.password);
        AuthDecision::Allow { data: None }
    } else {
        AuthDecision::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
    }
}
