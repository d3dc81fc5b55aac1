//! The one `/proc` reader of the tests and benches: CPU time (user + system) of a process or
//! of one thread of this process, and memory figures (`VmRSS`, `VmHWM`, ...) of a process.
//! Linux only; what the scripts read with `/proc/PID/stat` too (see `scripts/loadtest.sh`).

use std::io;
use std::time::Duration;

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy)]
pub enum Task {
    /// A whole process (all its threads): `/proc/PID/stat`.
    Process(u32),
    /// One thread of this process, by kernel thread id: `/proc/self/task/TID/stat`.
    Thread(i32),
}

/// User + system CPU time `task` has used so far.
pub fn cpu_time(task: Task) -> io::Result<Duration> {
    let path = match task {
        Task::Process(pid) => format!("/proc/{pid}/stat"),
        Task::Thread(tid) => format!("/proc/self/task/{tid}/stat"),
    };
    let stat = std::fs::read_to_string(&path)?;
    let ticks = cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {stat:?}")))?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / per_second,
    ))
}

/// utime + stime, in clock ticks, from the text of a `stat` file.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses, so
    // split after the last ")". utime and stime are fields 14 and 15 of the whole line:
    // the 12th and 13th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` figure from `/proc/PID/status`, in KiB: `VmRSS` (resident now), `VmHWM` (peak
/// resident), ...
pub fn memory_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_kib(&status, field).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {field} in /proc/{pid}/status"),
        )
    })
}

/// The value of `field` from the text of a `status` file, if it is in kB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix(" kB")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and a parenthesis does not shift the fields.
    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (echo (loop) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 1";
        assert_eq!(cpu_ticks(stat), Some(42));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_figures_are_read_in_kib() {
        let status = "Name:\techoloop\nVmHWM:\t    4688 kB\nVmRSS:\t    3380 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(3380));
        assert_eq!(status_kib(status, "VmHWM"), Some(4688));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    /// This process's and this thread's figures can be read, and this thread's CPU time as
    /// `/proc` reports it follows the kernel's own clock of it while we spin.
    ///
    /// The spin is measured in CPU time, not wall time: on a loaded machine 100 ms of wall
    /// time can bring this thread less than one clock tick (10 ms) of CPU, and the figure
    /// would rightly not move.
    #[test]
    fn own_figures_are_readable() {
        let pid = std::process::id();
        assert!(memory_kib(pid, "VmRSS").expect("VmRSS") > 0);
        let tid = crate::pinning::current_tid();
        let thread_clock = || {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
            Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        };
        let before = cpu_time(Task::Thread(tid)).expect("thread CPU");
        let clock_before = thread_clock();
        // Bounded in wall time too, generously: a runnable thread gets some CPU.
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        while thread_clock() - clock_before < SPIN {
            assert!(std::time::Instant::now() < give_up, "no CPU for a minute");
            for _ in 0..1_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
            }
        }
        let spent = thread_clock() - clock_before;
        let moved = cpu_time(Task::Thread(tid)).expect("thread CPU") - before;
        // `/proc` rounds utime and stime down to clock ticks each (2 ticks, 20 ms at the
        // usual 100 per second) and a running thread's figure lags by up to one scheduler
        // tick (at most 10 ms): 50 ms either way covers both.
        let slack = Duration::from_millis(50);
        assert!(
            moved + slack >= spent && moved <= spent + slack,
            "/proc says {moved:?}, the thread's clock {spent:?}"
        );
        // The whole process has used at least what this thread spent.
        let process = cpu_time(Task::Process(pid)).expect("process CPU");
        assert!(
            process + slack >= spent,
            "/proc says {process:?} for the process"
        );
    }

    /// CPU time to spin for: twice the slack of the comparison above.
    const SPIN: Duration = Duration::from_millis(100);
}
