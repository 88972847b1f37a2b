//! Results: one per case, printed as a PASS/FAIL list for people or as JSON
//! for CI.

use std::fmt::Write as _;
use std::time::Duration;

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    Pass,
    /// Why it failed, in words: what was expected and what came back.
    Fail(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    pub description: String,
    pub outcome: CaseOutcome,
    pub duration: Duration,
}

impl CaseResult {
    #[must_use]
    pub fn passed(&self) -> bool {
        self.outcome == CaseOutcome::Pass
    }
}

/// The results of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The address the suite ran against.
    pub target: String,
    /// The terminal the suite acted as (to find its records in the gateway).
    pub terminal_id: String,
    pub duration: Duration,
    pub results: Vec<CaseResult>,
}

impl Report {
    #[must_use]
    pub fn passed_count(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    #[must_use]
    pub fn failed_count(&self) -> usize {
        self.results.len() - self.passed_count()
    }

    /// True when at least one case ran and none failed.
    #[must_use]
    pub fn all_passed(&self) -> bool {
        !self.results.is_empty() && self.failed_count() == 0
    }

    /// The failed cases, for assertions and summaries.
    pub fn failures(&self) -> impl Iterator<Item = &CaseResult> {
        self.results.iter().filter(|r| !r.passed())
    }

    /// One line per case, failure reasons indented below, and a summary.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "posgate conformance against {} (terminal {})\n\n",
            self.target, self.terminal_id
        );
        let width = self.results.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for result in &self.results {
            let verdict = if result.passed() { "PASS" } else { "FAIL" };
            let _ = writeln!(
                text,
                "{verdict}  {:width$}  {:>5} ms  {}",
                result.name,
                result.duration.as_millis(),
                result.description
            );
            if let CaseOutcome::Fail(reason) = &result.outcome {
                for line in reason.lines() {
                    let _ = writeln!(text, "      {line}");
                }
            }
        }
        let _ = writeln!(
            text,
            "\n{} cases: {} passed, {} failed in {:.1} s",
            self.results.len(),
            self.passed_count(),
            self.failed_count(),
            self.duration.as_secs_f64()
        );
        text
    }

    /// The machine-readable report.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let cases: Vec<serde_json::Value> = self
            .results
            .iter()
            .map(|result| {
                let (status, error) = match &result.outcome {
                    CaseOutcome::Pass => ("pass", None),
                    CaseOutcome::Fail(reason) => ("fail", Some(reason.as_str())),
                };
                serde_json::json!({
                    "name": result.name,
                    "description": result.description,
                    "status": status,
                    "error": error,
                    "duration_ms": duration_ms(result.duration),
                })
            })
            .collect();
        serde_json::json!({
            "target": self.target,
            "terminal_id": self.terminal_id,
            "total": self.results.len(),
            "passed": self.passed_count(),
            "failed": self.failed_count(),
            "duration_ms": duration_ms(self.duration),
            "cases": cases,
        })
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
