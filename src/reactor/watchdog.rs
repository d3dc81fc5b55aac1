//! The watchdog: a connection that has work and gets no wake-up for it is found, re-driven and
//! counted, so a stall is never silent and never lasts longer than [`WATCH_PERIOD`] twice
//! over.
//!
//! The loop trusts edge-triggered readiness: once a call says `WouldBlock`, a connection waits
//! for the next edge. That is right only if `WouldBlock` meant what the state machine assumed.
//! A `splice` from the socket into an *empty* pipe that says `WouldBlock` is taken as "socket
//! drained", and a `splice` out of the pipe that says `WouldBlock` as "socket full"; if the
//! kernel ever says it for another reason (it cannot allocate a page under memory pressure,
//! say) while data is still queued, no edge follows and the connection would wait forever.
//! One such silent stall was seen once, on a loaded machine: a bulk reader got no byte for
//! 30 s while the clients beside it were served.
//!
//! So the reactor keeps a list of connections worth watching: those that moved bytes since
//! the last look, and those owing output. Every [`WATCH_PERIOD`] it looks at the ones that
//! are not queued and moved nothing for a whole period, and asks the kernel for their
//! *level* readiness (`poll(2)` with a zero timeout): would what the socket allows now give
//! the connection a step to take (`Connection::could_act_on`)?
//! - No: it waits for its peer, as it should. A connection owing nothing leaves the list
//!   (its next byte moved puts it back); one owing output stays, to be looked at again.
//! - Yes, for the first time: it becomes a suspect. Its edge may simply not have been
//!   dispatched yet, so nothing is done.
//! - Yes again, a period later, with not a byte moved in between (the loop polled many times
//!   meanwhile, so any edge would have been handed over): the wake-up was lost. The
//!   connection is given the readiness `poll(2)` reported and queued, counted in
//!   `Stats::stalls_recovered`, and a warning is logged (at most one per period).
//!
//! The cost: nothing per event; one `poll(2)` per period for each connection that went quiet
//! after moving bytes (once) or that owes output to a peer not reading. Not covered: a
//! connection that owes nothing and whose *first* new byte's edge is lost; nothing pointed
//! there, and covering it would mean asking the kernel about every idle connection.

use std::time::{Duration, Instant};

use slab::Slab;

use super::deadlines::{Deadlines, Owner, Timer};
use super::slot::{Slot, Stamp, Watch};
use crate::connection::Readiness;
use crate::stats::Stats;

/// How long a connection must have work and move nothing before it becomes a suspect, and
/// again before it is re-driven.
pub(super) const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// The connections worth watching, and when to look next.
#[derive(Debug, Default)]
pub(super) struct Watchdog {
    /// The connections in the list, named with their id so that an entry left by a closed
    /// connection never stands for the next one in the same slab entry. The next look is
    /// `Timer::WatchdogLook` in the reactor's registry, set while the list is not empty.
    watched: Vec<Owner>,
}

impl Watchdog {
    /// After a drive that moved `moved` bytes: a connection that moved bytes is watched (and
    /// cleared of suspicion: it made progress).
    pub(super) fn note(
        &mut self,
        (owner, slot): (Owner, &mut Slot),
        moved: usize,
        now: Instant,
        deadlines: &mut Deadlines,
    ) {
        if moved == 0 {
            return;
        }
        if slot.watch == Watch::Unwatched {
            self.watched.push(owner);
            if deadlines.get(Timer::WatchdogLook).is_none() {
                deadlines.set(Timer::WatchdogLook, now.checked_add(WATCH_PERIOD));
            }
        }
        slot.watch = Watch::Watched;
    }

    /// The look (`Timer::WatchdogLook`, due at `now`, also a stamp): see the module doc.
    /// Re-driven connections are pushed on `ready` (the loop's ready queue) for the next turn;
    /// the next look is set while connections are watched.
    pub(super) fn look(
        &mut self,
        slots: &mut Slab<Slot>,
        ready: &mut Vec<usize>,
        stats: &mut Stats,
        deadlines: &mut Deadlines,
        (now, stamp): (Instant, Stamp),
    ) {
        let mut recovered = 0u64;
        let mut watched = std::mem::take(&mut self.watched);
        watched.retain(|owner| {
            let Some(slot) = slots.get_mut(owner.key()).filter(|s| s.id == owner.id) else {
                return false; // closed since
            };
            if slot.queued
                || slot.conn.close_reason().is_some()
                || slot.idle_for(stamp) < WATCH_PERIOD
            {
                return true; // it runs, or ran lately: look again next time
            }
            if !slot.conn.could_act_on(level_readiness(slot)) {
                let owes = slot.conn.pending() > 0;
                slot.watch = if owes {
                    Watch::Watched
                } else {
                    Watch::Unwatched
                };
                return owes;
            }
            if slot.watch != Watch::Suspect {
                slot.watch = Watch::Suspect;
                return true;
            }
            // Work for a whole period, not a byte moved, no wake-up: re-drive it.
            slot.conn.on_readiness(level_readiness(slot));
            slot.watch = Watch::Watched;
            slot.queued = true;
            ready.push(owner.key());
            recovered += 1;
            log::debug!(
                "#{} had work and no wake-up for {:?}: re-driven",
                owner.key(),
                slot.idle_for(stamp)
            );
            true
        });
        self.watched = watched;
        let next_look = match self.watched.is_empty() {
            true => None,
            false => now.checked_add(WATCH_PERIOD),
        };
        deadlines.set(Timer::WatchdogLook, next_look);
        if recovered > 0 {
            stats.stalls_recovered += recovered;
            log::warn!(
                "re-drove {recovered} connection(s) that had work but got no wake-up for at \
                 least {WATCH_PERIOD:?} (a lost wake-up, recovered; counted in stalls_recovered)"
            );
        }
    }
}

/// The socket's readiness right now, level-triggered: what `poll(2)` says with a zero timeout.
/// An error reads as "nothing ready", which only makes the watchdog look again later.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn level_readiness(slot: &Slot) -> Readiness {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    let mut fds = [PollFd::new(
        &slot.socket,
        PollFlags::IN | PollFlags::OUT | PollFlags::RDHUP,
    )];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if poll(&mut fds, Some(&zero)).is_err() {
        return Readiness::default();
    }
    let seen = fds[0].revents();
    Readiness {
        readable: seen.intersects(PollFlags::IN | PollFlags::RDHUP | PollFlags::HUP),
        writable: seen.contains(PollFlags::OUT),
        read_closed: seen.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
    }
}

/// Elsewhere the server has no `poll(2)` wrapper (and no `splice`, the suspect): the watchdog
/// sees nothing ready and stays inert.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn level_readiness(_: &Slot) -> Readiness {
    Readiness::default()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use mio::Events;

    use crate::config::Config;
    use crate::reactor::Server;

    /// A server on port 0 whose turns never sleep long: the stats tick (100 ms) bounds each
    /// `poll`, so a test that turns the loop by hand always gets control back.
    fn test_server() -> Server {
        Server::bind(Config {
            port: 0,
            udp: false,
            stats_interval: Some(Duration::from_millis(100)),
            ..Config::default()
        })
        .expect("bind")
    }

    /// A lost wake-up: the client's bytes arrive, and the edge that announces them is polled
    /// but never dispatched (as if the kernel or the loop had lost it). The connection has
    /// input waiting and nothing will wake it; the watchdog must find it within two periods
    /// and a bit, re-drive it (the echo arrives) and count it. Without the watchdog the echo
    /// never comes and this test fails at its deadline.
    #[test]
    fn a_lost_wake_up_is_found_re_driven_and_counted() {
        let mut server = test_server();
        let addr = server.tcp_addr().expect("tcp");
        let mut events = Events::with_capacity(64);
        server.start(Instant::now());
        let mut client = TcpStream::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        // Accept, and one echo the ordinary way, so the connection has moved bytes.
        client.write_all(b"hello").expect("send");
        let mut back = [0u8; 5];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < back.len() && Instant::now() < deadline {
            server.turn(&mut events).expect("turn");
            got += client.read(&mut back[got..]).unwrap_or(0);
        }
        assert_eq!(&back, b"hello");
        // Let the connection go quiet (its writable edge and everything else handled).
        for _ in 0..5 {
            server.turn(&mut events).expect("turn");
        }
        // The lost edge: poll, and throw the events away.
        client.write_all(b"again").expect("send");
        let lost = Instant::now() + Duration::from_secs(2);
        while Instant::now() < lost {
            server
                .poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .expect("poll");
            if !events.is_empty() {
                break;
            }
        }
        assert!(
            !events.is_empty(),
            "the second write raised no event to lose"
        );
        events.clear();
        // Now the loop as usual: only the watchdog can wake the connection.
        let started = Instant::now();
        let mut got = 0;
        while got < back.len() && started.elapsed() < Duration::from_secs(6) {
            server.turn(&mut events).expect("turn");
            got += client.read(&mut back[got..]).unwrap_or(0);
        }
        let waited = started.elapsed();
        assert_eq!(got, 5, "no echo {waited:?} after the lost wake-up");
        assert_eq!(&back, b"again");
        assert!(
            waited <= 2 * super::WATCH_PERIOD + Duration::from_millis(1500),
            "recovered only after {waited:?}"
        );
        assert_eq!(server.stats().stalls_recovered, 1);
    }

    /// The watchdog does not count a connection that simply waits for its peer: a client that
    /// sent one message and reads nothing more, and one that sent nothing, over three periods.
    #[test]
    fn quiet_connections_are_not_counted() {
        let mut server = test_server();
        let addr = server.tcp_addr().expect("tcp");
        let mut events = Events::with_capacity(64);
        server.start(Instant::now());
        let mut talker = TcpStream::connect(addr).expect("connect");
        let _silent = TcpStream::connect(addr).expect("connect");
        talker.write_all(&[7u8; 100_000]).expect("send");
        let until = Instant::now() + 3 * super::WATCH_PERIOD + Duration::from_millis(200);
        while Instant::now() < until {
            server.turn(&mut events).expect("turn");
        }
        let stats = server.stats();
        assert_eq!(stats.tcp_bytes_in, 100_000, "{stats}");
        assert_eq!(stats.stalls_recovered, 0, "{stats}");
    }
}
