//! Facts about the machine and the process for the report's `run` and `cpu` blocks, so a
//! result file says what it was measured on and what the generator itself cost.

use std::time::Duration;

/// CPU model from `/proc/cpuinfo` (`model name`, or `Hardware`/`cpu model` on some ARM and
/// MIPS kernels); `"unknown"` elsewhere.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| matches!(k.trim(), "model name" | "Hardware" | "cpu model"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Kernel release from `/proc/sys/kernel/osrelease`, falling back to `uname(2)`.
pub fn kernel() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        return s.trim().to_string();
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        return rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
    }
    #[allow(unreachable_code)]
    "unknown".to_string()
}

/// User and system CPU time consumed by this process so far (all threads).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on behalf of the process (syscalls: most of a load generator).
    pub sys: Duration,
}

impl CpuTime {
    /// The process's CPU time now (`getrusage(RUSAGE_SELF)`); zero if unavailable.
    pub fn now() -> CpuTime {
        // SAFETY: getrusage fills the struct we pass and touches nothing else.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
                return CpuTime::default();
            }
            ru
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        CpuTime {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    /// CPU time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_available_on_linux() {
        assert!(!cpu_model().is_empty());
        assert!(!kernel().is_empty());
        let a = CpuTime::now();
        // Burn a little CPU so the clock can move.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuTime::now();
        assert!(b.user >= a.user);
    }
}
