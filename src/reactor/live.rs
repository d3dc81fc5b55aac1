//! Live counters for another thread. [`Server::stats`](crate::Server::stats) reads the counters of a server that is
//! not running; once `run` owns the server, a [`StatsHandle`] asks the loop for them the way a
//! [`ReportHandle`](crate::ReportHandle) asks for a report line: it leaves a request and wakes
//! the poller, and the loop answers between two turns with the same snapshot a stats line or
//! a scrape gets (`Server::stats`: counters, and the gauges read now). The loop never waits
//! for the asker; the asker waits, bounded, for the loop.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::stats::Stats;

/// How long [`StatsHandle::snapshot`] waits for a loop to answer. A running loop answers
/// within one turn (a turn is bounded to milliseconds); only a loop that is not running yet
/// (bound, `run` not called) lets it wait this long.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Reads the counters of a running [`Server`](crate::Server) (or the sum over the reactors of a
/// [`ServerGroup`](crate::ServerGroup)) from any thread. Cheap to clone.
///
/// ```no_run
/// let server = echoloop::Server::bind(echoloop::Config { port: 0, ..Default::default() })?;
/// let stats = server.stats_handle();
/// let stop = server.shutdown_handle();
/// let thread = std::thread::spawn(move || server.run());
/// if let Some(now) = stats.snapshot() {
///     println!("{} bytes echoed so far", now.tcp_bytes_out);
/// }
/// stop.shutdown();
/// thread.join().expect("server thread")?;
/// # Ok::<(), echoloop::ServerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StatsHandle {
    /// One mailbox and waker per reactor asked.
    reactors: Vec<(Arc<Mailbox>, Arc<Waker>)>,
}

/// Where a request and its answer meet.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    letters: Mutex<Letters>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct Letters {
    /// Requests made so far (a sequence number), and the last one answered.
    asked: u64,
    answered: u64,
    /// The last answer; after the run, the final counters.
    stats: Stats,
    /// The loop has ended: `stats` is final and nobody will answer again.
    stopped: bool,
}

impl Mailbox {
    /// True when a handle asked since the last answer.
    pub(super) fn is_asked(&self) -> bool {
        let letters = self.letters();
        letters.asked > letters.answered
    }

    /// Answers every request made so far with `stats`.
    pub(super) fn answer(&self, stats: Stats) {
        let mut letters = self.letters();
        letters.stats = stats;
        letters.answered = letters.asked;
        self.answered.notify_all();
    }

    /// The run is over: leaves the final counters for every handle, now and later.
    pub(super) fn leave_final(&self, stats: &Stats) {
        let mut letters = self.letters();
        letters.stats = stats.clone();
        letters.stopped = true;
        self.answered.notify_all();
    }

    fn letters(&self) -> MutexGuard<'_, Letters> {
        // A poisoned lock only means another thread panicked holding it; the data is plain.
        self.letters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StatsHandle {
    pub(super) fn new(mailbox: &Arc<Mailbox>, waker: Arc<Waker>) -> StatsHandle {
        StatsHandle {
            reactors: vec![(Arc::clone(mailbox), waker)],
        }
    }

    /// One handle that reads every reactor the given handles read, summed.
    pub(crate) fn join(handles: impl IntoIterator<Item = StatsHandle>) -> StatsHandle {
        StatsHandle {
            reactors: handles.into_iter().flat_map(|h| h.reactors).collect(),
        }
    }

    /// The counters now, with the gauges (pending bytes, open connections, queued datagrams)
    /// read now: summed over the reactors, the longest uptime. After the server stopped, its
    /// final counters. `None` if a loop did not answer within two seconds (it is not running
    /// yet: before `run`, read [`Server::stats`](crate::Server::stats)).
    pub fn snapshot(&self) -> Option<Stats> {
        let deadline = Instant::now() + ANSWER_WAIT;
        // Ask every reactor first, so that they answer side by side.
        let mut tickets = Vec::with_capacity(self.reactors.len());
        for (mailbox, waker) in &self.reactors {
            let mut letters = mailbox.letters();
            if !letters.stopped {
                letters.asked += 1;
                if let Err(e) = waker.wake() {
                    log::error!("cannot wake the event loop for its counters: {e}");
                }
            }
            tickets.push(letters.asked);
        }
        let mut total: Option<Stats> = None;
        for ((mailbox, _), ticket) in self.reactors.iter().zip(tickets) {
            let mut letters = mailbox.letters();
            while !letters.stopped && letters.answered < ticket {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                letters = mailbox
                    .answered
                    .wait_timeout(letters, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            match total.as_mut() {
                None => total = Some(letters.stats.clone()),
                Some(total) => total.merge(&letters.stats),
            }
        }
        total
    }
}
