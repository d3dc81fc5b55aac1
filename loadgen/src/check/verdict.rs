//! What `check` reports: one [`CheckResult`] per check (verdict, name, figure, and for a
//! failure what exactly went wrong), gathered in a [`SuiteReport`] that prints as one line
//! per check or as one JSON object, and decides the exit code.

use crate::report::{EXIT_FAILED, EXIT_OK};
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not run (e.g. UDP without `--udp`, or nothing to connect to).
    Skip,
    /// Measured and shown, not judged (fairness).
    Info,
}

impl Verdict {
    /// The word printed at the start of the check's line.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
            Verdict::Info => "INFO",
        }
    }
}

/// One check's line.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was exercised or measured ("9 sizes 1 B..16 MiB, 22.1 MiB echoed").
    pub figure: String,
    /// For a failure: what went wrong, where, expected against got. For a skip: why.
    pub detail: Option<String>,
    pub elapsed: Duration,
}

impl CheckResult {
    /// A pass with its figure.
    pub fn pass(name: &'static str, figure: impl Into<String>) -> CheckResult {
        CheckResult {
            name,
            verdict: Verdict::Pass,
            figure: figure.into(),
            detail: None,
            elapsed: Duration::ZERO,
        }
    }

    /// A failure with its figure and what went wrong.
    pub fn fail(
        name: &'static str,
        figure: impl Into<String>,
        detail: impl Into<String>,
    ) -> CheckResult {
        CheckResult {
            verdict: Verdict::Fail,
            detail: Some(detail.into()),
            ..CheckResult::pass(name, figure)
        }
    }

    /// A check not run, and why.
    pub fn skip(name: &'static str, why: impl Into<String>) -> CheckResult {
        CheckResult {
            verdict: Verdict::Skip,
            detail: Some(why.into()),
            ..CheckResult::pass(name, "")
        }
    }

    /// The human line: `PASS  name  figure`, then `  -> detail` for a failure; a skip has
    /// no figure, so its reason takes the figure's place: `SKIP  name  not run: why`.
    pub fn line(&self) -> String {
        if self.verdict == Verdict::Skip {
            return format!(
                "{:<4}  {:<18}  not run: {}",
                self.verdict.word(),
                self.name,
                self.detail.as_deref().unwrap_or("")
            );
        }
        let mut s = format!(
            "{:<4}  {:<18}  {}",
            self.verdict.word(),
            self.name,
            self.figure
        );
        if let Some(d) = &self.detail {
            let _ = write!(s, "\n      -> {d}");
        }
        s
    }
}

/// Renders a byte count as a human reads it: exact below 1 MiB unless a whole number of KiB
/// (`1 B`, `65537 B`, `64 KiB`), rounded above (`16 MiB`, `1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    match n {
        n if n < KIB * KIB && (n == 0 || n % KIB != 0) => format!("{n} B"),
        n if n < KIB * KIB => trim(n as f64 / KIB as f64, "KiB"),
        n => trim(n as f64 / (KIB * KIB) as f64, "MiB"),
    }
}

/// Renders an amount moved in all, rounded (`999 B`, `1012.2 KiB`, `17.1 MiB`).
pub fn total(n: u64) -> String {
    const KIB: f64 = 1024.0;
    match n as f64 {
        v if v < KIB => format!("{n} B"),
        v if v < KIB * KIB => format!("{:.1} KiB", v / KIB),
        v => format!("{:.1} MiB", v / (KIB * KIB)),
    }
}

fn trim(v: f64, unit: &str) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    pub target: SocketAddr,
    pub seed: u64,
    pub quick: bool,
    pub udp: bool,
    pub checks: Vec<CheckResult>,
    pub elapsed: Duration,
}

impl SuiteReport {
    fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == v).count()
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.verdict == Verdict::Fail)
    }

    /// The result of the check called `name`, if it was part of the run.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// 0 when no check failed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.count(Verdict::Fail) > 0 {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }

    /// Header, one line per check, and a verdict line with the seed to reproduce it.
    pub fn human(&self) -> String {
        let mode = if self.quick { "quick" } else { "default" };
        let mut s = format!(
            "check -> {} ({mode}, seed {}{})\n",
            self.target,
            self.seed,
            if self.udp { ", tcp+udp" } else { ", tcp" }
        );
        for c in &self.checks {
            let _ = writeln!(s, "{}", c.line());
        }
        let failed = self.count(Verdict::Fail);
        let _ = writeln!(
            s,
            "{}: {} passed, {failed} failed, {} skipped, {} informational in {:.1} s",
            if failed == 0 { "PASS" } else { "FAIL" },
            self.count(Verdict::Pass),
            self.count(Verdict::Skip),
            self.count(Verdict::Info),
            self.elapsed.as_secs_f64()
        );
        if failed > 0 {
            let names: Vec<&str> = self.failures().map(|c| c.name).collect();
            let _ = writeln!(
                s,
                "reproduce: echoloop-bench check --target {} --seed {}{}{} --only {}",
                self.target,
                self.seed,
                if self.quick { " --quick" } else { "" },
                if self.udp { " --udp" } else { "" },
                names.join(",")
            );
        }
        s
    }

    /// The same as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let checks: Vec<_> = self
            .checks
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "verdict": c.verdict.word(),
                    "figure": c.figure,
                    "detail": c.detail,
                    "elapsed_s": c.elapsed.as_secs_f64(),
                })
            })
            .collect();
        json!({
            "mode": "check",
            "target": self.target.to_string(),
            "seed": self.seed,
            "quick": self.quick,
            "udp": self.udp,
            "verdict": if self.exit_code() == EXIT_OK { "PASS" } else { "FAIL" },
            "passed": self.count(Verdict::Pass),
            "failed": self.count(Verdict::Fail),
            "skipped": self.count(Verdict::Skip),
            "informational": self.count(Verdict::Info),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "checks": checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(1), "1 B");
        assert_eq!(bytes(65_536), "64 KiB");
        assert_eq!(bytes(65_537), "65537 B");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(total(1_036_533), "1012.2 KiB");
        assert_eq!(bytes(16 << 20), "16 MiB");
    }

    #[test]
    fn one_failure_fails_the_suite_and_says_how_to_reproduce() {
        let mut r = SuiteReport {
            target: "127.0.0.1:7".parse().unwrap(),
            seed: 42,
            quick: true,
            udp: false,
            checks: vec![
                CheckResult::pass("churn", "200 connections"),
                CheckResult::skip("udp-sizes", "--udp not given"),
            ],
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(r.exit_code(), 0);
        r.checks.push(CheckResult::fail(
            "half-close",
            "6 sizes",
            "reset after 10 of 20 bytes",
        ));
        assert_eq!(r.exit_code(), 1);
        let text = r.human();
        assert!(text.contains("FAIL  half-close"), "{text}");
        // A skip has no figure: its reason stands in the figure's column, on its line.
        assert!(
            text.contains("SKIP  udp-sizes           not run: --udp not given\n"),
            "{text}"
        );
        assert!(text.contains("-> reset after 10 of 20 bytes"), "{text}");
        assert!(
            text.contains("--seed 42 --quick --only half-close"),
            "{text}"
        );
        let json = r.to_json();
        assert_eq!(json["failed"], 1);
        assert_eq!(json["checks"][2]["verdict"], "FAIL");
    }
}
