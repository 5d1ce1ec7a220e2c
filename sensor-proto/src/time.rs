//! RFC 3339 <-> ns since the Unix epoch, without a date crate. The sensor writes
//! `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`; the wire carries integers; the collector prints the same
//! text back, so a JSON event survives the round trip byte for byte.

/// Formats ns since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn format_rfc3339_nanos(unix_ns: i64) -> String {
    rfc3339_nanos(unix_ns).as_str().to_string()
}

/// The text of [`format_rfc3339_nanos`] on the stack: the JSON writer stamps every event
/// (and every process start) with it, so it costs no allocation there.
#[derive(Clone, Copy)]
pub struct Rfc3339([u8; 30]);

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written (`rfc3339_nanos`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Formats ns since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` into a stack buffer.
/// It writes its 30 digits and separators directly instead of going through `format!` (i64 ns
/// only reach the years 1677 to 2262: four digits).
pub fn rfc3339_nanos(unix_ns: i64) -> Rfc3339 {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    // Each field's digits, right to left (division by the constant 10 only).
    for (end, width, value) in [
        (4, 4, y),
        (7, 2, i64::from(m)),
        (10, 2, i64::from(d)),
        (13, 2, h),
        (16, 2, mi),
        (19, 2, s),
        (29, 9, nanos),
    ] {
        let mut v = value;
        for i in (end - width..end).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    Rfc3339(out)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (also with a space or `t`
/// separator and lower-case `z`) into ns since the Unix epoch. `None` when it is not that.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.iter().all(u8::is_ascii_digit) {
            Some(s.iter().fold(0i64, |a, &c| a * 10 + i64::from(c - b'0')))
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_s = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct writer against `format!` (the one it replaced).
    #[test]
    fn direct_writer_matches_format() {
        let reference = |unix_ns: i64| {
            let secs = unix_ns.div_euclid(1_000_000_000);
            let nanos = unix_ns.rem_euclid(1_000_000_000);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let sod = secs.rem_euclid(86_400);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60
            )
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        // i64 ns span the years 1677 to 2262: both ends, and random values between.
        let mut cases = vec![0, -1, 1, i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x as i64);
            cases.push((x % 4_000_000_000_000_000_000) as i64);
        }
        for ns in cases {
            assert_eq!(format_rfc3339_nanos(ns), reference(ns), "{ns}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            parse_rfc3339_nanos("2026-11-27T18:34:56.123456789Z"),
            Some(1_795_804_496_123_456_789)
        );
    }

    #[test]
    fn round_trip_many() {
        let mut t: i64 = -2_000_000_000_000_000_000;
        while t < 4_000_000_000_000_000_000 {
            let s = format_rfc3339_nanos(t);
            assert_eq!(parse_rfc3339_nanos(&s), Some(t), "{s}");
            t += 7_777_777_777_777_777;
        }
    }

    #[test]
    fn variants_and_rejects() {
        let z = parse_rfc3339_nanos("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_rfc3339_nanos("2024-01-02 03:04:05.0z"), Some(z));
        assert_eq!(parse_rfc3339_nanos("2024-01-02T04:04:05+01:00"), Some(z));
        assert_eq!(parse_rfc3339_nanos("2024-01-02T02:04:05-01:00"), Some(z));
        assert_eq!(
            parse_rfc3339_nanos("2024-01-02T03:04:05.5Z"),
            Some(z + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-01-02T03:04:05.1234567891Z"),
            Some(z + 123_456_789)
        );
        for bad in [
            "",
            "2024-01-02",
            "2024-13-02T03:04:05Z",
            "2023-02-29T03:04:05Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0100",
            "2024-01-02T03:04:05Zjunk",
            "20x4-01-02T03:04:05Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
    }
}
