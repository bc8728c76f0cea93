//! Durations on the command line: `500ms`, `2s`, `1m`, `720h`, `30d` (a bare number is seconds).

use std::time::Duration;

/// Parses `500ms`, `30s`, `10m`, `2h`, `30d` (one number, one unit), as the flags take them.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 2s or 1m"))?;
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
                .ok_or_else(|| format!("{s:?} is too long"))
        }
        u => Err(format!("{s:?}: unknown unit {u:?} (ms, s, m, h or d)")),
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
        assert!(parse("2w").unwrap_err().contains("unknown unit \"w\""));
        assert!(parse("soon").unwrap_err().contains("not a duration"));
    }
}
