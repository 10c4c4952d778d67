//! RFC 3339 times as nextbest reads them: event times (`ts`), a model's `valid_from` and
//! `valid_until`, and `campaign run --now`. One parser, so the three agree.
//!
//! A time must carry its offset (`Z`, `z`, `+01:00`, `-05:00`): a time without one is refused,
//! never guessed as UTC, because the client who wrote it meant some zone and only it knows
//! which. The date and time are joined by `T` or `t`, as the `date-time` format of JSON Schema
//! (and so of the OpenAPI document) requires; a space is refused for the same reason. Fractional
//! seconds are read to the millisecond. Times are written back in UTC. This module reads no clock.

/// A text that is not an RFC 3339 time with an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// A date and time without `Z` or `±hh:mm`.
    #[error("`{0}` has no UTC offset; add `Z` or one such as `+01:00`, e.g. 2026-11-22T10:00:00Z")]
    NoOffset(String),
    /// Not an RFC 3339 date-time at all.
    #[error("`{0}` is not an RFC 3339 time ({1}); e.g. 2026-11-22T10:00:00Z or 2026-11-22T11:00:00+01:00")]
    Invalid(String, String),
}

/// Unix milliseconds as the files and answers write a time: RFC 3339 in UTC, to the millisecond
/// (a time before 1970 is written as 1970).
pub fn format_ms(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Parses an RFC 3339 date-time with an offset into Unix milliseconds (negative before 1970).
pub fn parse_ms(s: &str) -> Result<i64, TimeError> {
    let shown = || s.chars().take(64).collect::<String>();
    let b = s.as_bytes();
    // The grammar's year is four digits (a sign or a fifth digit is no RFC 3339 date).
    if b.first().is_some_and(|c| !c.is_ascii_digit()) || b.get(4).is_some_and(|&c| c != b'-') {
        return Err(TimeError::Invalid(
            shown(),
            "the date must start with a four-digit year, as 2026-11-22".into(),
        ));
    }
    // chrono also takes a space between date and time; the `date-time` grammar does not.
    if b.len() >= 19 && !matches!(b[10], b'T' | b't') {
        return Err(TimeError::Invalid(
            shown(),
            "the date and the time must be joined by `T`".into(),
        ));
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Ok(t.timestamp_millis()),
        Err(_) if lacks_offset(s) => Err(TimeError::NoOffset(shown())),
        Err(e) => Err(TimeError::Invalid(shown(), e.to_string())),
    }
}

/// True for a well-formed date and time that simply stops before an offset.
fn lacks_offset(s: &str) -> bool {
    let with_z = format!("{s}Z");
    chrono::DateTime::parse_from_rfc3339(&with_z).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL_4AM_PARIS: i64 = 1_796_353_200_000; // 2026-12-04T03:00:00Z

    #[test]
    fn a_year_beyond_four_digits_is_named_as_the_fault() {
        for s in [
            "+10000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
        ] {
            let e = parse_ms(s).unwrap_err().to_string();
            assert!(e.contains("four-digit year"), "{s}: {e}");
        }
    }

    #[test]
    fn every_offset_names_the_same_instant() {
        for s in [
            "2026-12-04T03:00:00Z",
            "2026-12-04t03:00:00z",
            "2026-12-04T04:00:00+01:00",
            "2026-12-03T22:00:00-05:00",
            "2026-12-04T03:00:00.000Z",
            "2026-12-04T03:00:00+00:00",
            "2026-12-04T03:00:00-00:00",
        ] {
            assert_eq!(parse_ms(s), Ok(LOCAL_4AM_PARIS), "{s}");
        }
        assert_eq!(
            parse_ms("2026-12-04T03:00:00.25Z"),
            Ok(LOCAL_4AM_PARIS + 250)
        );
        assert_eq!(parse_ms("1969-12-31T23:59:59Z"), Ok(-1000));
    }

    #[test]
    fn a_time_without_offset_is_refused_not_read_as_utc() {
        for s in ["2026-12-04T03:00:00", "2026-12-04T03:00:00.5"] {
            let e = parse_ms(s).unwrap_err();
            assert!(matches!(e, TimeError::NoOffset(_)), "{s}: {e}");
            assert!(e.to_string().contains("no UTC offset"), "{e}");
        }
        for s in [
            "2026-12-04 03:00:00Z",
            "2026-12-04 03:00:00",
            "2026-12-04",
            "yesterday",
            "2026-13-04T03:00:00Z",
            "2026-12-04T03:00:00+1",
            "",
        ] {
            assert!(
                matches!(parse_ms(s), Err(TimeError::Invalid(..))),
                "{s}: {:?}",
                parse_ms(s)
            );
        }
    }
}
