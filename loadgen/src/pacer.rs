//! Waiting for the next deadline with sub-millisecond precision, for the open-loop modes.
//!
//! `epoll_wait` takes its timeout in whole milliseconds (mio rounds up), so a timetable of
//! sends 50 µs apart driven by poll timeouts goes out in bursts up to a millisecond late,
//! and the coordinated-omission-corrected latency then measures the generator, not the
//! server. Instead, a `timerfd` sits in the poll set: it is armed (nanosecond resolution,
//! with the thread's timer slack lowered from the default 50 µs) a little before the
//! deadline, and the last stretch is covered by polling with a zero timeout, which keeps
//! serving socket events while it spins. Closed-loop modes need none of this and use the
//! plain poll timeout.
//!
//! Measured on the 2-core development machine (see docs/load-testing.md): the timerfd alone
//! leaves a scheduling error of tens of microseconds under load (wake-up latency); a 20 µs spin
//! before each deadline brings the median to about a microsecond at the cost of the spin's
//! CPU, which a generator pinned to its own core can afford.

use mio::{Events, Poll, Token};
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

/// The timer's token: above any slab key or socket index a worker will ever use.
pub(crate) const TIMER: Token = Token(usize::MAX);

/// How a worker waits for its next deadline.
pub(crate) struct Pacer {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    timer: Option<rustix::fd::OwnedFd>,
    spin: Duration,
    /// The deadline the timer is armed for, so an unchanged deadline costs no syscall.
    armed: Option<Instant>,
}

impl Pacer {
    /// Plain poll timeouts (millisecond resolution): for closed-loop modes.
    pub(crate) fn coarse() -> Pacer {
        Pacer {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            timer: None,
            spin: Duration::ZERO,
            armed: None,
        }
    }

    /// A precise pacer registered in `poll`, spinning for the last `spin` before each
    /// deadline. Falls back to coarse waiting where timerfd is unavailable.
    pub(crate) fn precise(poll: &Poll, spin: Duration) -> io::Result<Pacer> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            use std::os::fd::AsRawFd;
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                TIMER,
                mio::Interest::READABLE,
            )?;
            // The default 50 µs slack would let the kernel defer our wake-up by that much.
            if let Err(e) = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1)) {
                log::debug!("timer slack: {e}");
            }
            Ok(Pacer {
                timer: Some(fd),
                spin,
                armed: None,
            })
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = (poll, spin);
            Ok(Pacer::coarse())
        }
    }

    /// Polls for events, returning at the latest at `until` (precisely, if this pacer is).
    /// `Interrupted` is swallowed: the caller loops and checks its clock anyway.
    pub(crate) fn poll(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        until: Instant,
    ) -> io::Result<()> {
        let now = Instant::now();
        let left = until.saturating_duration_since(now);
        let timeout = self.timeout(left, until)?;
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                events.clear();
                Ok(())
            }
            r => r,
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn timeout(&mut self, left: Duration, until: Instant) -> io::Result<Option<Duration>> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let Some(fd) = &self.timer else {
            return Ok(Some(left));
        };
        if left <= self.spin {
            return Ok(Some(Duration::ZERO));
        }
        if self.armed != Some(until) {
            // Relative to now: `Instant` is CLOCK_MONOTONIC on Linux but does not expose its
            // raw value. Re-arming also resets the expiration count, so the timer is never
            // read: each expiry is a fresh edge for epoll.
            let wait = left - self.spin;
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: wait.as_secs() as i64,
                    tv_nsec: wait.subsec_nanos().max(1) as _,
                },
            };
            timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec)?;
            self.armed = Some(until);
        }
        // The timer wakes us; the timeout is only a safety net, a millisecond late at worst.
        Ok(Some(left))
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn timeout(&mut self, left: Duration, _until: Instant) -> io::Result<Option<Duration>> {
        Ok(Some(left))
    }
}
