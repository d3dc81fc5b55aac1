//! The connection's unit tests, as scripts: no sockets, no clock. Each test reads as "this
//! comes in, that goes out"; `properties` runs random scripts against the invariants in
//! `script`.

use super::script::{ReadStep, ScriptedConnection, ScriptedPipe, ScriptedStream, Tally, WriteStep};
use super::*;

fn limits() -> Limits {
    Limits {
        high_water: 1000,
        low_water: 250,
        read_budget: 4096,
        write_budget: 4096,
    }
}

/// One drive with the test limits and a 512-byte scratch buffer, summed into `tally`.
fn drive(conn: &mut ScriptedConnection, io: &mut ScriptedStream, tally: &mut Tally) -> Outcome {
    let mut scratch = [0u8; 512];
    let outcome = conn.drive(io, &mut scratch, &limits());
    tally.add(&outcome);
    outcome
}

#[test]
fn fast_path_echoes_from_scratch_without_buffering() {
    let mut io = ScriptedStream::new(vec![ReadStep::Data(100)], vec![WriteStep::Take(100)]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    let outcome = drive(&mut conn, &mut io, &mut tally);
    assert_eq!(io.echoed, io.sent_in);
    assert_eq!(outcome.bytes_written, 100);
    assert_eq!(conn.buffer_capacity(), 0, "idle connection holds no buffer");
    assert_eq!(io.read_calls, 1, "a short read skips the WouldBlock read");
    assert!(!outcome.yielded);
}

#[test]
fn short_write_keeps_the_rest_in_order_until_writable_again() {
    let mut io = ScriptedStream::new(
        vec![ReadStep::Data(300), ReadStep::Data(200)],
        vec![WriteStep::Take(50), WriteStep::WouldBlock],
    );
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.pending(), 450);
    assert_eq!(io.echoed.len(), 50);
    io.writes = vec![WriteStep::Take(1000)].into();
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(io.echoed, io.sent_in);
    assert_eq!(conn.buffer_capacity(), 0);
}

#[test]
fn peer_fin_flushes_everything_then_sends_fin_and_closes() {
    let mut io = ScriptedStream::new(
        vec![ReadStep::Data(512), ReadStep::Data(40), ReadStep::Eof],
        vec![WriteStep::WouldBlock],
    );
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.phase(), Phase::PeerClosed);
    assert!(!io.fin_sent, "FIN must wait for pending output");
    io.writes = vec![WriteStep::Take(100), WriteStep::Take(1000)].into();
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(io.echoed, io.sent_in);
    assert!(io.fin_sent);
    assert_eq!(conn.close_reason(), Some(CloseReason::PeerClosed));
    assert_eq!(tally.bytes_in, 552);
    assert_eq!(tally.bytes_out, 552);
}

#[test]
fn backpressure_stops_reading_at_high_water_and_resumes_at_low_water() {
    let reads = (0..10).map(|_| ReadStep::Data(512)).collect();
    let mut io = ScriptedStream::new(reads, vec![]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(
        conn.pending(),
        1000,
        "reads stop exactly at the high-water mark"
    );
    assert!(conn.is_paused());
    assert_eq!(tally.pauses, 1);
    // The client drains 700 bytes: still above low water, so no reading yet.
    io.writes = vec![WriteStep::Take(700), WriteStep::WouldBlock].into();
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert!(conn.is_paused());
    assert_eq!(conn.pending(), 300);
    // 100 more: below low water, and reading resumes with no new read edge.
    io.writes = vec![WriteStep::Take(100), WriteStep::WouldBlock].into();
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert!(conn.pending() > 200, "read resumed without a new edge");
    let mut all = io.echoed.clone();
    all.truncate(800);
    assert_eq!(all[..], io.sent_in[..800]);
}

/// Regression (found by the property tests): when the memory budget lowers the
/// high-water mark below what a connection already holds, the next drive must pause it,
/// not read into an empty buffer, whose 0 would be taken for the peer's FIN.
#[test]
fn limit_lowered_below_pending_pauses_instead_of_reading_nothing() {
    let mut io = ScriptedStream::new(vec![ReadStep::Data(512), ReadStep::Data(300)], vec![]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.pending(), 812);
    assert!(!conn.is_paused());
    io.reads = vec![ReadStep::Data(100)].into();
    let squeezed = Limits {
        high_water: 500,
        low_water: 100,
        ..limits()
    };
    conn.on_readiness(Readiness::READABLE);
    let outcome = conn.drive(&mut io, &mut [0u8; 512], &squeezed);
    tally.add(&outcome);
    assert_eq!(conn.phase(), Phase::Open, "no FIN was read");
    assert!(conn.is_paused() && outcome.pauses > 0);
    assert_eq!(
        io.reads.len(),
        1,
        "nothing read while over the lowered limit"
    );
}

#[test]
fn budget_cut_yields_and_resumes_without_new_event() {
    let reads = (0..20).map(|_| ReadStep::Data(512)).collect();
    let writes = (0..20).map(|_| WriteStep::Take(512)).collect();
    let mut io = ScriptedStream::new(reads, writes);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    let first = drive(&mut conn, &mut io, &mut tally);
    assert!(first.yielded);
    assert_eq!(first.bytes_read, 4096);
    let mut rounds = 0;
    while drive(&mut conn, &mut io, &mut tally).yielded {
        rounds += 1;
        assert!(rounds < 10);
    }
    assert_eq!(io.echoed.len(), 20 * 512);
    assert_eq!(io.echoed, io.sent_in);
}

#[test]
fn reset_closes_with_reason() {
    let mut io = ScriptedStream::new(vec![ReadStep::Data(200), ReadStep::Reset], vec![]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.close_reason(), Some(CloseReason::Reset));
}

#[test]
fn broken_pipe_on_write_closes_as_reset() {
    let mut io = ScriptedStream::new(vec![ReadStep::Data(10)], vec![WriteStep::Broken]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.close_reason(), Some(CloseReason::Reset));
}

/// A connection holding 100 bytes of output that the peer would not take.
fn with_100_pending() -> (ScriptedConnection, ScriptedStream, Tally) {
    let mut io = ScriptedStream::new(vec![ReadStep::Data(100)], vec![WriteStep::WouldBlock]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.pending(), 100);
    (conn, io, tally)
}

#[test]
fn drain_flushes_sends_fin_then_lingers_until_peer_eof() {
    let (mut conn, mut io, mut tally) = with_100_pending();
    conn.begin_drain();
    io.reads = vec![ReadStep::Data(30), ReadStep::Eof].into();
    io.writes = vec![WriteStep::Take(100)].into();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert!(io.fin_sent);
    assert_eq!(
        io.echoed.len(),
        100,
        "only what was read before the drain is echoed"
    );
    assert_eq!(tally.bytes_discarded, 30);
    assert_eq!(conn.close_reason(), Some(CloseReason::Shutdown));
}

#[test]
fn would_block_clears_readiness_until_the_next_event() {
    let mut io = ScriptedStream::new(
        vec![
            ReadStep::Data(512),
            ReadStep::WouldBlock,
            ReadStep::Data(512),
        ],
        vec![WriteStep::Take(4096), WriteStep::Take(4096)],
    );
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(
        io.echoed.len(),
        512,
        "no read after WouldBlock without a new edge"
    );
    conn.on_readiness(Readiness::READABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(io.echoed.len(), 1024);
    assert_eq!(io.echoed, io.sent_in);
}

#[test]
fn spurious_events_cost_nothing() {
    let mut io = ScriptedStream::new(vec![], vec![]);
    let mut conn = ScriptedConnection::new();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    let outcome = drive(&mut conn, &mut io, &mut tally);
    assert_eq!(outcome, Outcome::default());
    assert_eq!(conn.phase(), Phase::Open);
}

/// A connection switched to a pipe, as the reactor does for bulk traffic.
fn piped() -> ScriptedConnection {
    let mut conn = ScriptedConnection::new();
    assert!(conn.use_pipe(ScriptedPipe::default()).is_ok());
    conn
}

#[test]
fn piped_connection_echoes_through_the_pipe_without_a_heap_buffer() {
    let mut io = ScriptedStream::new(
        vec![ReadStep::Data(700), ReadStep::Data(300), ReadStep::Eof],
        vec![WriteStep::Take(400)],
    );
    io.write_default = WriteStep::Take(usize::MAX);
    let mut conn = piped();
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(io.echoed, io.sent_in);
    assert_eq!(io.sent_in.len(), 1000);
    assert_eq!(conn.phase(), Phase::Closed(CloseReason::PeerClosed));
    assert!(io.fin_sent);
    assert_eq!(conn.buffer_capacity(), 0);
    assert_eq!(tally.bytes_out, 1000);
}

#[test]
fn full_pipe_spills_into_the_buffer_and_everything_comes_back_in_order() {
    use super::script::PIPE_CAPACITY;
    // More input than the pipe holds, and a peer that is not reading yet: the connection
    // must keep reading (into its buffer, behind the pipe) up to the pending limit, as
    // without a pipe, or a client that writes before it reads would deadlock.
    let chunks = vec![ReadStep::Data(PIPE_CAPACITY), ReadStep::Data(2000)];
    let mut io = ScriptedStream::new(chunks, vec![WriteStep::WouldBlock]);
    let mut conn = piped();
    let mut tally = Tally::default();
    // Limits far above the pipe's capacity: only the full pipe stops reading.
    let roomy = Limits {
        high_water: 1 << 20,
        low_water: 1 << 18,
        read_budget: 1 << 20,
        write_budget: 1 << 20,
    };
    let mut drive = |conn: &mut ScriptedConnection, io: &mut ScriptedStream| {
        let outcome = conn.drive(io, &mut [0u8; 4096], &roomy);
        tally.add(&outcome);
        outcome
    };
    conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
    let outcome = drive(&mut conn, &mut io);
    assert_eq!(conn.pending_in_pipe(), PIPE_CAPACITY, "the pipe filled up");
    assert!(io.sent_in.len() > PIPE_CAPACITY);
    assert_eq!(
        conn.pending(),
        io.sent_in.len(),
        "the rest waits in the buffer"
    );
    assert!(io.reads.is_empty(), "all input read");
    assert!(!outcome.yielded, "nothing to do until the peer reads");
    // The peer reads: the pipe's bytes first, then the buffer's, in order.
    io.write_default = WriteStep::Take(usize::MAX);
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io);
    assert_eq!(conn.pending(), 0);
    assert_eq!(conn.buffer_capacity(), 0);
    assert_eq!(io.echoed, io.sent_in);
    // With the buffer empty, new input takes the pipe again.
    io.reads.push_back(ReadStep::Data(500));
    conn.on_readiness(Readiness::READABLE);
    drive(&mut conn, &mut io);
    assert_eq!(conn.pending_in_pipe(), 0);
    assert_eq!(io.echoed, io.sent_in);
}

#[test]
fn use_pipe_only_switches_with_nothing_pending() {
    let (mut conn, _io, _tally) = with_100_pending();
    assert!(
        conn.use_pipe(ScriptedPipe::default()).is_err(),
        "buffered bytes would be overtaken"
    );
    assert!(!conn.uses_pipe());
}

mod properties {
    //! Random event scripts against the invariants in `script::Script`: echo
    //! is a prefix of the input, pending stays under the high-water mark, phases move
    //! only along the diagram, budgets hold, no busy loop, and a peer that finally reads
    //! everything and sends FIN gets every byte back and our FIN.
    use crate::connection::script::{Action, Script};
    use crate::connection::Limits;
    use proptest::prelude::*;

    fn limits() -> impl Strategy<Value = Limits> {
        (2usize..3000, 0usize..100, 1usize..5000, 1usize..5000).prop_map(
            |(high_water, low_percent, read_budget, write_budget)| Limits {
                high_water,
                low_water: high_water * low_percent / 100,
                read_budget,
                write_budget,
            },
        )
    }

    /// Any action; without `errors`, no reset, broken pipe or shutdown.
    fn action(errors: bool) -> impl Strategy<Value = Action> {
        let event = (any::<bool>(), any::<bool>(), prop::bool::weighted(0.1)).prop_map(
            |(readable, writable, read_closed)| Action::Event {
                readable,
                writable,
                read_closed,
            },
        );
        let benign = prop_oneof![
            6 => (1usize..1500).prop_map(Action::Arrive),
            1 => Just(Action::ReadBlocks),
            1 => Just(Action::PeerFin),
            5 => (1usize..1500).prop_map(Action::Accepts),
            2 => Just(Action::WriteBlocks),
            8 => event,
            2 => Just(Action::Drive),
            1 => prop::option::of(1usize..3000).prop_map(Action::Squeeze),
            1 => Just(Action::UsePipe),
        ];
        if !errors {
            return benign.boxed();
        }
        let fatal = prop_oneof![
            Just(Action::PeerReset),
            Just(Action::PipeBreaks),
            Just(Action::BeginDrain),
        ];
        prop_oneof![26 => benign, 3 => fatal].boxed()
    }

    proptest! {
        /// Any script keeps the invariants after every step and, once the peer reads all
        /// and sends FIN, ends with everything read echoed (or discarded after a drain)
        /// and our FIN sent, unless an I/O error closed the connection.
        #[test]
        fn random_scripts_keep_the_invariants(
            limits in limits(),
            scratch_len in 1usize..2048,
            actions in prop::collection::vec(action(true), 0..120),
        ) {
            let mut script = Script::new(limits, scratch_len);
            for action in actions {
                script.step(action);
            }
            script.finish();
        }

        /// The same without resets, broken pipes or shutdown: every script must then end
        /// closed in order with every byte echoed (the completeness half of the property,
        /// which errors would otherwise mask).
        #[test]
        fn error_free_scripts_echo_everything(
            limits in limits(),
            scratch_len in 1usize..2048,
            actions in prop::collection::vec(action(false), 0..120),
        ) {
            let mut script = Script::new(limits, scratch_len);
            for action in actions {
                script.step(action);
            }
            script.finish();
            prop_assert_eq!(
                script.conn.close_reason(),
                Some(crate::connection::CloseReason::PeerClosed)
            );
        }

        /// The fuzz target's byte decoder turns any input into a script that runs.
        #[test]
        fn decoded_byte_scripts_keep_the_invariants(
            data in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            Script::run_bytes(&data);
        }
    }
}

/// A streaming service gets the write budget per drive, like echo, and yields with more
/// to say; the stream continues where it stopped.
#[test]
fn chargen_streams_one_write_budget_per_drive_and_yields() {
    use crate::service::chargen::{Chargen, CYCLE};
    let mut conn = ScriptedConnection::with_service(Box::new(Chargen::new(1)));
    let mut io = ScriptedStream::new(vec![], vec![]);
    io.write_default = WriteStep::Take(1 << 20);
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::WRITABLE);
    let first = drive(&mut conn, &mut io, &mut tally);
    assert_eq!(first.bytes_written, limits().write_budget);
    assert!(
        first.yielded,
        "more to stream: run again without a new edge"
    );
    let second = drive(&mut conn, &mut io, &mut tally);
    assert_eq!(second.bytes_written, limits().write_budget);
    let stream: Vec<u8> = CYCLE
        .iter()
        .cycle()
        .take(io.echoed.len())
        .copied()
        .collect();
    assert_eq!(io.echoed, stream);
    assert_eq!(conn.pending(), 0, "nothing held between drives");
    assert!(!conn.can_use_pipe(), "only echo takes a pipe");
}

/// A service that speaks first and closes: its line, our FIN, then the linger ends
/// with the peer's FIN as an orderly close.
#[test]
fn daytime_speaks_first_then_closes_in_order() {
    use crate::service::daytime::Daytime;
    let mut conn = ScriptedConnection::with_service(Box::new(Daytime));
    let mut io = ScriptedStream::new(vec![], vec![WriteStep::Take(100)]);
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::WRITABLE);
    drive(&mut conn, &mut io, &mut tally);
    assert!(io.echoed.ends_with(b" UTC\r\n"), "{:?}", io.echoed);
    assert!(io.fin_sent);
    assert_eq!(conn.phase(), Phase::Lingering);
    assert!(conn.awaits_peer_close());
    io.reads = vec![ReadStep::Data(10), ReadStep::Eof].into();
    conn.on_readiness(Readiness::READ_CLOSED);
    drive(&mut conn, &mut io, &mut tally);
    assert_eq!(conn.close_reason(), Some(CloseReason::PeerClosed));
    assert_eq!(tally.bytes_discarded, 10);
}

/// Discard reads everything and holds nothing.
#[test]
fn discard_reads_without_buffering() {
    use crate::service::discard::Discard;
    let mut conn = ScriptedConnection::with_service(Box::new(Discard));
    let reads = vec![ReadStep::Data(512), ReadStep::Data(512), ReadStep::Eof];
    let mut io = ScriptedStream::new(reads, vec![]);
    let mut tally = Tally::default();
    conn.on_readiness(Readiness::READ_CLOSED | Readiness::WRITABLE);
    let outcome = drive(&mut conn, &mut io, &mut tally);
    assert_eq!((outcome.bytes_read, outcome.bytes_written), (1024, 0));
    assert_eq!(conn.buffer_capacity(), 0);
    assert_eq!(conn.close_reason(), Some(CloseReason::PeerClosed));
}
