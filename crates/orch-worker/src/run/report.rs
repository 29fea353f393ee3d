//! Small pure helpers of a run: the verdict of a failed step, step reports, text for logs
//! and reports.

use super::*;

pub(super) fn step_verdict(
    report: &StepReport,
    task_deadline_hit: bool,
    task_timeout: Option<Duration>,
) -> Verdict {
    let error = report
        .error
        .clone()
        .unwrap_or_else(|| report.summary.clone());
    if task_deadline_hit {
        let limit = humantime_duration(task_timeout.unwrap_or_default());
        return Verdict {
            outcome: Outcome::NeedsReview,
            reason: format!("the task ran past its timeout of {limit}"),
            interrupted: false,
            requeue_after: None,
        };
    }
    if let (Some((agent, reset_at)), Some(FailureClass::RateLimited), false) = (
        &report.reset,
        report.failure,
        report.status == ResultStatus::NeedsReview,
    ) {
        // At least a second, at most a day: a reset time in the past or absurdly far off must
        // neither spin nor park the task for good.
        let ms = reset_at.saturating_mul(1000).saturating_sub(now_ms());
        let wait =
            Duration::from_millis(u64::try_from(ms.clamp(1_000, 24 * 3_600_000)).unwrap_or(1_000));
        return Verdict {
            outcome: Outcome::Failed,
            reason: format!(
                "step `{}` failed: {error}; the task waits for the reset without using an attempt",
                report.name
            ),
            interrupted: false,
            requeue_after: Some((Some(agent.clone()), wait)),
        };
    }
    match report.status {
        ResultStatus::NeedsReview => Verdict {
            outcome: Outcome::NeedsReview,
            reason: format!("step `{}`: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ if report.failure.is_some_and(|class| !class.retryable()) => Verdict {
            outcome: Outcome::FailedPermanently,
            reason: format!("step `{}` failed: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ if error.starts_with("refused: ") => Verdict {
            outcome: Outcome::FailedPermanently,
            reason: format!("step `{}` {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
        _ => Verdict {
            outcome: Outcome::Failed,
            reason: format!("step `{}` failed: {error}", report.name),
            interrupted: false,
            requeue_after: None,
        },
    }
}

pub(super) fn humantime_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(super) fn skipped(name: &str) -> StepReport {
    StepReport {
        name: name.to_owned(),
        status: ResultStatus::Skipped,
        summary: "skipped: an earlier step did not succeed".into(),
        exit_code: None,
        usage: None,
        session_id: None,
        output_tail: String::new(),
        duration_ms: 0,
        error: None,
        failure: None,
        reset: None,
    }
}

/// A step an earlier attempt of the task finished: its checkpoint is on the branch, so it is
/// not run again.
pub(super) fn done_earlier(name: &str, checkpoint: &str) -> StepReport {
    StepReport {
        status: ResultStatus::Succeeded,
        summary: format!("done by an earlier attempt (checkpoint {checkpoint}); not run again"),
        ..skipped(name)
    }
}

pub(super) fn failed_report(name: &str, error: String, clock: Instant) -> StepReport {
    StepReport {
        name: name.to_owned(),
        status: ResultStatus::Failed,
        summary: error.clone(),
        exit_code: None,
        usage: None,
        session_id: None,
        output_tail: String::new(),
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: Some(error),
        failure: None,
        reset: None,
    }
}

pub(super) fn status_name(status: ResultStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(super) fn exit_text(exit: &exec::ExitRecord) -> String {
    if exit.timed_out {
        "timed out and was stopped".to_owned()
    } else if exit.cancelled {
        "was stopped (run cancelled)".to_owned()
    } else if let Some(code) = exit.code {
        format!("exited with code {code}")
    } else if let Some(signal) = exit.signal {
        format!("was killed by signal {signal}")
    } else {
        "ended".to_owned()
    }
}

pub(super) fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Files named in a unified diff (`diff --git a/X b/X` headers), sorted and unique.
pub fn changed_files(diff: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(diff);
    let mut files: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .filter_map(|rest| rest.split(" b/").next())
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_290_252_356), "2026-11-21T19:44:12.356Z");
    }

    #[test]
    fn changed_files_come_from_diff_headers() {
        let diff =
            b"diff --git a/src/x.rs b/src/x.rs\n--- a\n+++ b\ndiff --git a/NOTES.md b/NOTES.md\n";
        assert_eq!(
            changed_files(diff),
            vec!["NOTES.md".to_owned(), "src/x.rs".to_owned()]
        );
    }
}
