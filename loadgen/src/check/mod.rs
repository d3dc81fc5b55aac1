//! `echoloop-bench check`: a bounded conformance battery that any echo server can run before
//! anyone measures it, because a fast wrong server wins every benchmark.
//!
//! Each check exercises one promise of an echo server and can fail; its sentence here is the
//! one docs/load-testing.md repeats. In running order:
//! - `connect`: a TCP connection opens and one byte comes back (otherwise the other TCP
//!   checks are skipped).
//! - `integrity-sizes`: messages of 1 B to 16 MiB, each on its own connection, written in
//!   random chunks with random pauses, come back byte-exact.
//! - `crosstalk`: many connections at once, in waves (each opened after the last closed),
//!   each with its own content, get back only their own bytes.
//! - `pipelined`: bursts of up to 64 requests written back to back before reading come back
//!   whole and in order.
//! - `deadlock-10m`: a client that writes 10 MiB before reading anything, then half-closes,
//!   gets all 10 MiB back, and the server read them all before the client read (a server
//!   that stops reading while its writes are pending hangs, or only the buffers saved it).
//! - `deadlock-64m`: the same with 64 MiB, more than loopback buffers plus most servers'
//!   output limits; the server may stop reading (backpressure), and once the client reads,
//!   everything comes back.
//! - `half-close`: after the client's FIN, every pending byte arrives, then the server's FIN,
//!   never a reset.
//! - `backpressure`: a slow reader (small reads, pauses, one long stop) gets every byte in
//!   order while the client writes as fast as the server takes.
//! - `churn`: connect, echo, close, many times over (some closes are resets); the server
//!   keeps answering.
//! - `idle`: connections held silent for a while still echo afterwards.
//! - `fairness` (informational): a ping-pong client's round-trip time alone and beside a
//!   client streaming bulk data.
//! - `udp-sizes` (with `--udp`): datagrams of 0, 1, 1472, 1473, 8192 and 65,507 bytes come
//!   back exactly, one reply per request.
//! - `udp-crosstalk` (with `--udp`): replies to distinct sockets carry only their own
//!   requests.
//!
//! Layout: [`compare`] is the sans-IO core (expected against received, the diagnosis),
//! [`transfer`] the socket driver (timeouts on every call), [`queues`] what the kernel
//! holds for a connection (`/proc/net/tcp`), [`verdict`] the report; the
//! checks live in one file per family: `integrity`, `deadlock`, `lifecycle`, `pressure`,
//! `datagram`. Every stream and choice derives from the seed, which the report prints.

pub mod compare;
mod datagram;
mod deadlock;
mod integrity;
mod lifecycle;
mod pressure;
pub mod queues;
pub mod transfer;
pub mod verdict;

pub use verdict::{CheckResult, SuiteReport, Verdict};

use crate::payload::derive_key;
use compare::{Failure, StreamRef};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use transfer::{Limits, Outcome};

/// What to check and how hard.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The echo server (TCP, and UDP on the same port with `udp`).
    pub target: SocketAddr,
    /// Run the UDP checks too.
    pub udp: bool,
    /// The small battery (seconds) instead of the default one (under a minute).
    pub quick: bool,
    /// Seed of every stream, size and pause.
    pub seed: u64,
    /// Longest wait for any one read or write; `None` = the profile's (2 s quick, 5 s).
    pub timeout: Option<Duration>,
    /// Run only these checks (names as printed); empty = all.
    pub only: Vec<String>,
}

impl CheckOptions {
    /// All checks of the default battery against `target`, TCP only.
    pub fn new(target: SocketAddr) -> CheckOptions {
        CheckOptions {
            target,
            udp: false,
            quick: false,
            seed: 0x5eed,
            timeout: None,
            only: Vec::new(),
        }
    }
}

/// How much each check does: the quick or the default battery.
#[derive(Debug, Clone)]
pub struct Profile {
    pub io_timeout: Duration,
    /// Longest any one connection's transfer may take.
    pub deadline: Duration,
    pub sizes: &'static [u64],
    pub crosstalk_connections: usize,
    pub crosstalk_waves: usize,
    pub crosstalk_max: u64,
    pub pipelined_connections: usize,
    pub pipelined_bursts: usize,
    /// How long the writer of a deadlock check waits for progress before it calls the
    /// server stuck (10 MiB) or pausing (64 MiB).
    pub stall: Duration,
    pub half_close_sizes: &'static [u64],
    pub backpressure_len: u64,
    pub churn_cycles: usize,
    pub idle_connections: usize,
    pub idle_for: Duration,
    pub fairness_for: Duration,
    pub udp_sockets: usize,
    pub udp_per_socket: usize,
}

impl Profile {
    /// Seconds in all.
    pub fn quick() -> Profile {
        Profile {
            io_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(15),
            sizes: &[1, 1000, 65_537, 1 << 20, 16 << 20],
            crosstalk_connections: 16,
            crosstalk_waves: 2,
            crosstalk_max: 64 << 10,
            pipelined_connections: 4,
            pipelined_bursts: 20,
            stall: Duration::from_secs(1),
            half_close_sizes: &[0, 1, 65_536, 65_537, 1 << 20],
            backpressure_len: 8 << 20,
            churn_cycles: 200,
            idle_connections: 8,
            idle_for: Duration::from_secs(1),
            fairness_for: Duration::from_millis(500),
            udp_sockets: 8,
            udp_per_socket: 16,
        }
    }

    /// Under a minute against a sound server.
    pub fn default_battery() -> Profile {
        Profile {
            io_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
            sizes: &[
                1,
                7,
                1000,
                4096,
                65_535,
                65_536,
                65_537,
                262_145,
                1 << 20,
                4 << 20,
                16 << 20,
            ],
            crosstalk_connections: 64,
            crosstalk_waves: 3,
            crosstalk_max: 256 << 10,
            pipelined_connections: 8,
            pipelined_bursts: 100,
            stall: Duration::from_secs(2),
            half_close_sizes: &[0, 1, 65_535, 65_536, 65_537, 1 << 20, 4 << 20],
            backpressure_len: 24 << 20,
            churn_cycles: 1000,
            idle_connections: 32,
            idle_for: Duration::from_secs(5),
            fairness_for: Duration::from_secs(2),
            udp_sockets: 32,
            udp_per_socket: 32,
        }
    }
}

/// What a check gets: where, how hard, its limits and its own seed.
pub(crate) struct Ctx<'a> {
    pub target: SocketAddr,
    pub profile: &'a Profile,
    pub limits: Limits,
    /// This check's seed (derived from the run's seed and the check's place in the list,
    /// so `--only` reproduces the same streams).
    pub seed: u64,
}

impl Ctx<'_> {
    /// The stream key of this check's connection (or datagram) number `i`.
    pub fn key(&self, i: u64) -> u64 {
        derive_key(self.seed, i)
    }
}

type CheckFn = fn(&Ctx) -> CheckResult;

/// One entry of the battery.
struct Check {
    name: &'static str,
    udp: bool,
    run: CheckFn,
}

/// The battery, in running order (see the module doc for what each means).
const CHECKS: &[Check] = &[
    Check {
        name: "connect",
        udp: false,
        run: lifecycle::connect,
    },
    Check {
        name: "integrity-sizes",
        udp: false,
        run: integrity::sizes,
    },
    Check {
        name: "crosstalk",
        udp: false,
        run: integrity::crosstalk,
    },
    Check {
        name: "pipelined",
        udp: false,
        run: integrity::pipelined,
    },
    Check {
        name: "deadlock-10m",
        udp: false,
        run: deadlock::ten_mib,
    },
    Check {
        name: "deadlock-64m",
        udp: false,
        run: deadlock::sixty_four_mib,
    },
    Check {
        name: "half-close",
        udp: false,
        run: lifecycle::half_close,
    },
    Check {
        name: "backpressure",
        udp: false,
        run: pressure::backpressure,
    },
    Check {
        name: "churn",
        udp: false,
        run: lifecycle::churn,
    },
    Check {
        name: "idle",
        udp: false,
        run: lifecycle::idle,
    },
    Check {
        name: "fairness",
        udp: false,
        run: pressure::fairness,
    },
    Check {
        name: "udp-sizes",
        udp: true,
        run: datagram::sizes,
    },
    Check {
        name: "udp-crosstalk",
        udp: true,
        run: datagram::crosstalk,
    },
];

/// The names of all checks, in running order.
pub fn names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|c| c.name)
}

/// Runs the battery. Fails only for an unknown name in `only`; a failing server is a
/// report with failures in it.
pub fn run(opts: &CheckOptions) -> Result<SuiteReport, String> {
    if let Some(bad) = opts.only.iter().find(|n| !names().any(|m| m == n.as_str())) {
        return Err(format!(
            "unknown check '{bad}' (checks: {})",
            names().collect::<Vec<_>>().join(", ")
        ));
    }
    let profile = if opts.quick {
        Profile::quick()
    } else {
        Profile::default_battery()
    };
    let io = opts.timeout.unwrap_or(profile.io_timeout);
    let limits = Limits {
        connect: io,
        io,
        deadline: profile.deadline.max(io * 2),
    };
    let start = Instant::now();
    let mut checks = Vec::new();
    let mut tcp_down: Option<String> = None;
    let wanted = |name: &str| opts.only.is_empty() || opts.only.iter().any(|n| n == name);
    let tcp_wanted = CHECKS.iter().any(|c| !c.udp && wanted(c.name));
    for (index, check) in CHECKS.iter().enumerate() {
        let wanted = wanted(check.name);
        // `connect` runs whenever a TCP check does: the others depend on it.
        let needed = wanted || (check.name == "connect" && tcp_wanted);
        if !needed {
            continue;
        }
        let result = if check.udp && !opts.udp {
            CheckResult::skip(check.name, "UDP not checked (add --udp)")
        } else if let (false, Some(why)) = (check.udp, &tcp_down) {
            CheckResult::skip(check.name, format!("no TCP echo at all ({why})"))
        } else {
            let ctx = Ctx {
                target: opts.target,
                profile: &profile,
                limits,
                seed: derive_key(opts.seed, index as u64),
            };
            let begun = Instant::now();
            let mut r = (check.run)(&ctx);
            r.elapsed = begun.elapsed();
            r
        };
        if check.name == "connect" && result.verdict == Verdict::Fail {
            tcp_down = result.detail.clone();
        }
        checks.push(result);
    }
    Ok(SuiteReport {
        target: opts.target,
        seed: opts.seed,
        quick: opts.quick,
        udp: opts.udp,
        checks,
        elapsed: start.elapsed(),
    })
}

/// Turns the outcomes of a check's connections (each with its label) into its result:
/// a pass with `figure`, or a failure naming the first connection that failed (unless its
/// label is empty: a check of one connection), with the
/// stray bytes traced among all the check's streams and a count of the other failures.
pub(crate) fn judge(
    name: &'static str,
    figure: String,
    outcomes: Vec<(String, u64, Outcome)>,
) -> CheckResult {
    let streams: Vec<StreamRef> = outcomes
        .iter()
        .map(|(label, key, o)| StreamRef {
            label: label.clone(),
            key: *key,
            sent: o.sent,
        })
        .collect();
    let failed: Vec<(&String, &StreamRef, &Failure)> = outcomes
        .iter()
        .zip(&streams)
        .filter_map(|((label, _, o), s)| o.result.as_ref().err().map(|f| (label, s, f)))
        .collect();
    // A wrong byte says more than a timeout that may be its consequence.
    let Some(&(label, own, first)) = failed
        .iter()
        .find(|(_, _, f)| !f.is_timeout())
        .or(failed.first())
    else {
        return CheckResult::pass(name, figure);
    };
    let mut failure = first.clone();
    failure.explain(own, &streams);
    let others = match failed.len() - 1 {
        0 => String::new(),
        n => format!(" (and {n} more of {} failed)", outcomes.len()),
    };
    // A check of one connection has no connection to name: the failure is the subject.
    let subject = if label.is_empty() {
        String::new()
    } else {
        format!("{label}: ")
    };
    CheckResult::fail(name, figure, format!("{subject}{failure}{others}"))
}
