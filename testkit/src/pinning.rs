//! Pinning threads to cores, so a benchmark's server and client do not share one, and the
//! kernel thread id that [`crate::procfs`] reads a thread's CPU time by.

/// The calling thread's kernel thread id.
pub fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Pins the calling thread to `core`. On a machine with fewer cores there is nothing to pin
/// apart, and nothing happens; a failure to pin is reported, since it makes figures noisier.
pub fn pin_current_thread(core: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if core >= cores {
        return;
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: could not pin a thread to core {core}: {e}");
    }
}
