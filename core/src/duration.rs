//! Durations on the command line: `500ms`, `2s`, `1m`, `720h`, `30d` (a bare number is seconds).

use std::time::Duration;

/// A duration flag that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number first.
    #[error("{0:?} is not a duration like 500ms, 2s or 1m")]
    NotADuration(String),
    /// More seconds than fit.
    #[error("{0:?} is too long")]
    TooLong(String),
    /// A unit other than ms, s, m, h or d.
    #[error("{input:?}: unknown unit {unit:?} (ms, s, m, h or d)")]
    UnknownUnit {
        /// What was given.
        input: String,
        /// Its unit.
        unit: String,
    },
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `30d` (one number, one unit), as the flags take them.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| DurationError::NotADuration(s.to_string()))?;
    match &t[split..] {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        u @ ("m" | "h" | "d") => {
            let unit = match u {
                "m" => 60,
                "h" => 3600,
                _ => 86_400,
            };
            n.checked_mul(unit)
                .map(Duration::from_secs)
                .ok_or_else(|| DurationError::TooLong(s.to_string()))
        }
        u => Err(DurationError::UnknownUnit {
            input: s.to_string(),
            unit: u.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse("2w"),
            Err(DurationError::UnknownUnit {
                input: "2w".into(),
                unit: "w".into()
            })
        );
        assert!(
            parse("soon")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        assert_eq!(
            parse("300000000000000d"),
            Err(DurationError::TooLong("300000000000000d".into()))
        );
    }
}
