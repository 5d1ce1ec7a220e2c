//! `--since` / `--until` values: RFC 3339, Unix seconds, `now`, or a duration ago (`90s`,
//! `15m`, `2h`, `7d`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad time {0:?}: expected RFC 3339 (2024-05-01T12:00:00Z), Unix seconds, `now`, or a duration ago like 15m, 2h, 7d")]
pub struct TimeArgError(pub String);

/// Parses `s` relative to `now_ns` (ns since the epoch).
pub fn parse_time_arg(s: &str, now_ns: i64) -> Result<i64, TimeArgError> {
    let err = || TimeArgError(s.to_string());
    let t = s.trim();
    if t == "now" {
        return Ok(now_ns);
    }
    if let Some(ns) = sensor_proto::time::parse_rfc3339_nanos(t) {
        return Ok(ns);
    }
    if let Some(unit) = t.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let n: i64 = t[..t.len() - 1].parse().map_err(|_| err())?;
        let mult: i64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(err()),
        };
        let secs = n.checked_mul(mult).ok_or_else(err)?;
        return now_ns
            .checked_sub(secs.checked_mul(1_000_000_000).ok_or_else(err)?)
            .ok_or_else(err);
    }
    let secs: f64 = t.parse().map_err(|_| err())?;
    if !secs.is_finite() {
        return Err(err());
    }
    Ok((secs * 1e9) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now = 10_000_000_000_000;
        assert_eq!(parse_time_arg("now", now), Ok(now));
        assert_eq!(parse_time_arg("15m", now), Ok(now - 900_000_000_000));
        assert_eq!(parse_time_arg("2h", now), Ok(now - 7_200_000_000_000));
        assert_eq!(parse_time_arg("1d", now), Ok(now - 86_400_000_000_000));
        assert_eq!(parse_time_arg("1.5", now), Ok(1_500_000_000));
        assert_eq!(
            parse_time_arg("1970-01-01T00:00:02Z", now),
            Ok(2_000_000_000)
        );
        assert!(parse_time_arg("yesterday", now).is_err());
        assert!(parse_time_arg("5y", now).is_err());
        assert!(parse_time_arg("", now).is_err());
    }
}
