//! The server's clock and the two time formats of the API (ISO-8601 strings for entity
//! timestamps, unix seconds for `date_sent`). Tests move the clock instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Wall-clock time with an adjustable offset, shared by everything that compares times
/// (token expiry, signature windows), so tests can move time forward without sleeping.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now(&self) -> OffsetDateTime {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        OffsetDateTime::now_utc() + time::Duration::milliseconds(offset)
    }

    pub fn unix_seconds(&self) -> i64 {
        self.now().unix_timestamp()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// `2018-12-06T12:04:48Z`: the entity timestamp format of the hosted API (whole seconds, UTC).
pub fn iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// Parses a date given either as unix seconds or as an RFC 3339 / ISO-8601 string.
pub fn parse_date(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() {
            return OffsetDateTime::from_unix_timestamp(secs as i64).ok();
        }
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_drops_fractions_and_uses_z() {
        let t = OffsetDateTime::from_unix_timestamp(1_544_097_888).unwrap();
        assert_eq!(
            iso(t + time::Duration::milliseconds(250)),
            "2018-12-06T12:04:48Z"
        );
    }

    #[test]
    fn dates_parse_from_seconds_and_iso_with_millis() {
        let a = parse_date("1700000000").unwrap();
        let b = parse_date("2023-11-14T22:13:20.000Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_date("yesterday").is_none());
    }

    #[test]
    fn advancing_a_clock_moves_its_clones() {
        let c = Clock::new();
        let d = c.clone();
        let before = d.unix_seconds();
        c.advance(std::time::Duration::from_secs(7200));
        assert!(d.unix_seconds() >= before + 7200);
    }
}
