//! Cron jobs' calendar: parsing a schedule (five or six fields, a named time zone) and deciding
//! which slots are due at a given time under the missed-firing policy. Pure: the caller passes
//! the time in (the scheduler's calendar clock).
//!
//! A **slot** is an instant the schedule names (milliseconds since the Unix epoch). A job
//! remembers the newest slot it has decided (`last_slot`: fired or skipped); at each tick the
//! slots after it up to now are due. The newest due slot is **on time** when the tick sees it
//! within [`ON_TIME`] of its instant; every other due slot was **missed** (the scheduler was
//! down or no daemon ran). The policy decides the missed ones: `skip` fires none of them,
//! `catch-up` fires one firing for all of them (under the newest missed slot).

use std::time::Duration;

use chrono::TimeZone;

use crate::{FieldError, Timestamp};

/// How late a tick may see a slot and still fire it as scheduled: a slot seen later than this
/// was missed. A daemon taking the scheduler lease over from a dead leader (a few ticks) is well
/// within it.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// A parsed schedule: a cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    zone: chrono_tz::Tz,
    cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.zone == other.zone
    }
}

impl Schedule {
    /// Parse `expression` (five fields `minute hour day-of-month month day-of-week`, or six with
    /// seconds first; names like `MON` and `JAN`, `*/5`, ranges and lists; `@daily` and the
    /// other nicknames) in the IANA time zone `zone` (e.g. `Europe/Berlin`, `UTC`).
    pub fn parse(expression: &str, zone: &str) -> Result<Schedule, FieldError> {
        let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expression.split(' ').count();
        if !expression.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(FieldError::new(
                "schedule",
                format!(
                    "`{expression}` has {fields} field(s); write five (`minute hour day month \
                     weekday`, e.g. `*/15 * * * *`) or six with seconds first (`0 */15 * * * *`)"
                ),
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&expression)
            .map_err(|e| {
                FieldError::new(
                    "schedule",
                    format!(
                        "`{expression}` is not a cron expression ({e}); write five fields like \
                         `0 9 * * MON-FRI` or six with seconds first"
                    ),
                )
            })?;
        let zone: chrono_tz::Tz = zone.trim().parse().map_err(|_| {
            FieldError::new(
                "timezone",
                format!(
                    "`{zone}` is not a time zone orch knows; use an IANA name like `UTC`, \
                     `Europe/Berlin` or `America/New_York`"
                ),
            )
        })?;
        let schedule = Schedule {
            expression,
            zone,
            cron,
        };
        // A pattern that can never match (30 February) is refused rather than never firing.
        if schedule.next_after(Timestamp(0)).is_none() {
            return Err(FieldError::new(
                "schedule",
                format!("`{}` never matches a date", schedule.expression),
            ));
        }
        Ok(schedule)
    }

    /// The expression, with its whitespace normalised.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn zone(&self) -> &str {
        self.zone.name()
    }

    /// The first slot strictly after `at`.
    pub fn next_after(&self, at: Timestamp) -> Option<Timestamp> {
        let start = self.zone.timestamp_millis_opt(whole_second(at)).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(Timestamp(next.timestamp_millis()))
    }

    /// The newest slot at or before `at`.
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let start = self.zone.timestamp_millis_opt(whole_second(at)).single()?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        Some(Timestamp(previous.timestamp_millis()))
    }

    /// The newest slot strictly before `at`.
    fn latest_before(&self, at: Timestamp) -> Option<Timestamp> {
        let start = self.zone.timestamp_millis_opt(whole_second(at)).single()?;
        let previous = self.cron.find_previous_occurrence(&start, false).ok()?;
        Some(Timestamp(previous.timestamp_millis()))
    }

    /// `at` as a local time of the schedule's zone, e.g. `2026-12-04 09:00:00 CET`.
    pub fn local_time(&self, at: Timestamp) -> String {
        match self.zone.timestamp_millis_opt(at.0).single() {
            Some(local) => local.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
            None => format!("{} ms", at.0),
        }
    }
}

/// `at` rounded down to its second: slots are whole seconds, and the cron matcher compares
/// seconds only.
fn whole_second(at: Timestamp) -> i64 {
    at.0.div_euclid(1000) * 1000
}

/// What to do with slots missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedPolicy {
    /// Fire none of them; wait for the next slot.
    #[default]
    Skip,
    /// Fire once for all of them (under the newest missed slot), then go on as scheduled.
    CatchUp,
}

impl MissedPolicy {
    /// The stored and shown name (`skip`, `catch-up`).
    pub fn as_str(self) -> &'static str {
        match self {
            MissedPolicy::Skip => "skip",
            MissedPolicy::CatchUp => "catch-up",
        }
    }

    /// Parse `skip` or `catch-up` (`catch_up`, `catchup` too).
    pub fn parse(text: &str) -> Result<MissedPolicy, FieldError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "skip" => Ok(MissedPolicy::Skip),
            "catch-up" | "catch_up" | "catchup" => Ok(MissedPolicy::CatchUp),
            other => Err(FieldError::new(
                "missed",
                format!(
                    "`{other}` is not a missed-firing policy; use `skip` (fire nothing for slots \
                     missed while orch was down) or `catch-up` (fire once for them)"
                ),
            )),
        }
    }
}

/// Why a job fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiringKind {
    /// A slot seen on time.
    Scheduled,
    /// The one firing for missed slots (policy `catch-up`).
    CatchUp,
    /// `orch job run`: by hand, now.
    Manual,
}

impl FiringKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FiringKind::Scheduled => "scheduled",
            FiringKind::CatchUp => "catch_up",
            FiringKind::Manual => "manual",
        }
    }

    /// The kind of a stored name.
    pub fn parse(text: &str) -> Option<FiringKind> {
        match text {
            "scheduled" => Some(FiringKind::Scheduled),
            "catch_up" => Some(FiringKind::CatchUp),
            "manual" => Some(FiringKind::Manual),
            _ => None,
        }
    }
}

/// What is due for one job at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// The one firing for missed slots (its slot), with policy `catch-up`.
    pub catch_up: Option<Timestamp>,
    /// The slot to fire as scheduled.
    pub on_time: Option<Timestamp>,
    /// Whether slots were missed and not fired (policy `skip`).
    pub skipped: bool,
    /// The job's newest decided slot after this tick (when it moves).
    pub decided_up_to: Option<Timestamp>,
}

/// The slots due at `now` for a job whose newest decided slot is `since` (its creation time if
/// none yet).
pub fn due(schedule: &Schedule, since: Timestamp, now: Timestamp, policy: MissedPolicy) -> Due {
    let Some(latest) = schedule.latest_at_or_before(now) else {
        return Due::default();
    };
    if latest <= since {
        return Due::default();
    }
    let on_time_window = i64::try_from(ON_TIME.as_millis()).unwrap_or(i64::MAX);
    let latest_on_time = now.0 - latest.0 <= on_time_window;
    let newest_missed = if latest_on_time {
        schedule.latest_before(latest).filter(|&slot| slot > since)
    } else {
        Some(latest)
    };
    let (catch_up, skipped) = match (newest_missed, policy) {
        (Some(slot), MissedPolicy::CatchUp) => (Some(slot), false),
        (Some(_), MissedPolicy::Skip) => (None, true),
        (None, _) => (None, false),
    };
    Due {
        catch_up,
        on_time: latest_on_time.then_some(latest),
        skipped,
        decided_up_to: Some(latest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    // 2026-12-03 00:00:00 UTC.
    const MIDNIGHT: i64 = 1_796_256_000_000;

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", "UTC").unwrap()
    }

    #[test]
    fn five_and_six_fields_parse_and_others_are_refused_with_the_fix() {
        assert!(Schedule::parse("*/5 * * * *", "UTC").is_ok());
        assert!(Schedule::parse("30 */5 * * * *", "Europe/Berlin").is_ok());
        assert!(Schedule::parse("@daily", "UTC").is_ok());
        let four = Schedule::parse("* * * *", "UTC").unwrap_err();
        assert!(four.reason.contains("five"), "{}", four.reason);
        let seven = Schedule::parse("0 0 0 1 1 * 2030", "UTC").unwrap_err();
        assert!(seven.reason.contains("7 field"), "{}", seven.reason);
        let bad = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert_eq!(bad.field, "schedule");
        let zone = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(zone.field, "timezone");
        assert!(zone.reason.contains("Europe/Berlin"));
    }

    #[test]
    fn the_next_slot_is_in_the_schedules_time_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter.
        let schedule = Schedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        let next = schedule.next_after(Timestamp(MIDNIGHT)).unwrap();
        assert_eq!(next.0, MIDNIGHT + 8 * 60 * MINUTE);
        assert_eq!(schedule.local_time(next), "2026-12-03 09:00:00 CET");
    }

    #[test]
    fn nothing_is_due_before_the_first_slot_after_creation() {
        let due = due(
            &every_minute(),
            Timestamp(MIDNIGHT + 10),
            Timestamp(MIDNIGHT + 30_000),
            MissedPolicy::CatchUp,
        );
        assert_eq!(due, Due::default());
    }

    #[test]
    fn a_slot_seen_on_time_fires_once_as_scheduled() {
        let schedule = every_minute();
        let first = due(
            &schedule,
            Timestamp(MIDNIGHT - 1),
            Timestamp(MIDNIGHT + 500),
            MissedPolicy::Skip,
        );
        assert_eq!(first.on_time, Some(Timestamp(MIDNIGHT)));
        assert_eq!(first.catch_up, None);
        assert!(!first.skipped);
        // The next tick, with the slot decided, has nothing to do.
        let again = due(
            &schedule,
            first.decided_up_to.unwrap(),
            Timestamp(MIDNIGHT + 900),
            MissedPolicy::Skip,
        );
        assert_eq!(again, Due::default());
    }

    #[test]
    fn after_downtime_skip_fires_only_the_current_slot_and_catch_up_adds_one_firing() {
        let schedule = every_minute();
        let since = Timestamp(MIDNIGHT);
        let now = Timestamp(MIDNIGHT + 10 * MINUTE + 5_000);
        let skip = due(&schedule, since, now, MissedPolicy::Skip);
        assert_eq!(skip.on_time, Some(Timestamp(MIDNIGHT + 10 * MINUTE)));
        assert_eq!(skip.catch_up, None);
        assert!(skip.skipped);
        let catch_up = due(&schedule, since, now, MissedPolicy::CatchUp);
        assert_eq!(catch_up.on_time, Some(Timestamp(MIDNIGHT + 10 * MINUTE)));
        assert_eq!(catch_up.catch_up, Some(Timestamp(MIDNIGHT + 9 * MINUTE)));
        assert_eq!(
            catch_up.decided_up_to,
            Some(Timestamp(MIDNIGHT + 10 * MINUTE))
        );
    }

    #[test]
    fn a_daily_slot_missed_by_hours_is_caught_up_once_or_skipped() {
        let schedule = Schedule::parse("0 9 * * *", "UTC").unwrap();
        let since = Timestamp(MIDNIGHT);
        let noon = Timestamp(MIDNIGHT + 12 * 60 * MINUTE);
        let nine = Timestamp(MIDNIGHT + 9 * 60 * MINUTE);
        let catch_up = due(&schedule, since, noon, MissedPolicy::CatchUp);
        assert_eq!(catch_up.on_time, None);
        assert_eq!(catch_up.catch_up, Some(nine));
        assert_eq!(catch_up.decided_up_to, Some(nine));
        let skip = due(&schedule, since, noon, MissedPolicy::Skip);
        assert_eq!(
            (skip.on_time, skip.catch_up, skip.skipped),
            (None, None, true)
        );
        assert_eq!(skip.decided_up_to, Some(nine));
    }

    #[test]
    fn policies_parse_in_their_spellings() {
        assert_eq!(
            MissedPolicy::parse("catch-up").unwrap(),
            MissedPolicy::CatchUp
        );
        assert_eq!(
            MissedPolicy::parse("catch_up").unwrap(),
            MissedPolicy::CatchUp
        );
        assert_eq!(MissedPolicy::parse("Skip").unwrap(), MissedPolicy::Skip);
        assert!(MissedPolicy::parse("all").is_err());
    }
}
