//! RFC 3339 timestamps (`YYYY-MM-DDTHH:MM:SS.ffffffZ`) for message and
//! channel times, shared by the server's JSON and the client, without a date
//! library.
//!
//! The civil-date conversions are Howard Hinnant's `days_from_civil` /
//! `civil_from_days` algorithms on the proleptic Gregorian calendar.

/// Days since 1970-01-01 of the civil date `y-m-d` (`m` 1..=12, `d` 1..=31).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date `(y, m, d)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are within their small ranges by construction.
    (y, m as u32, d as u32)
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_rfc3339_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // `days` is at most u64::MAX / 86_400_000_000, far inside i64.
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn digits(s: &[u8], what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(format!("bad {what} in timestamp"));
    }
    s.iter()
        .try_fold(0u32, |acc, &b| {
            acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
        .ok_or_else(|| format!("bad {what} in timestamp"))
}

/// Parses an RFC 3339 timestamp (`2026-11-22T10:00:00Z`, optional fraction,
/// `Z` or `±HH:MM` offset) into microseconds since the epoch.
///
/// # Errors
/// A message saying which part is wrong; times before 1970 are rejected.
pub fn parse_rfc3339_us(s: &str) -> Result<u64, String> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(format!("{s:?} is not an RFC 3339 timestamp"));
    }
    let sep_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !sep_ok {
        return Err(format!("{s:?} is not an RFC 3339 timestamp"));
    }
    let year = digits(&b[0..4], "year")?;
    let month = digits(&b[5..7], "month")?;
    let day = digits(&b[8..10], "day")?;
    let hour = digits(&b[11..13], "hour")?;
    let minute = digits(&b[14..16], "minute")?;
    let second = digits(&b[17..19], "second")?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("{s:?} has a field out of range"));
    }
    let mut rest = &b[19..];
    let mut micros = 0u64;
    if let Some((b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(format!("{s:?} has an empty fraction"));
        }
        for (i, c) in frac[..n].iter().enumerate() {
            if i < 6 {
                micros = micros * 10 + u64::from(c - b'0');
            }
        }
        for _ in n..6 {
            micros *= 10;
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2], "offset hour")?;
            let m = digits(&[*m1, *m2], "offset minute")?;
            if h > 23 || m > 59 {
                return Err(format!("{s:?} has an offset out of range"));
            }
            let v = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return Err(format!("{s:?} needs a Z or ±HH:MM offset")),
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| format!("{s:?} is before 1970"))?;
    Ok(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339_us(1_447_948_399_281_155),
            "2015-11-19T15:53:19.281155Z"
        );
        assert_eq!(
            format_rfc3339_us(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
    }

    #[test]
    fn civil_round_trips_over_four_centuries() {
        for z in (-800_000i64..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn parses_what_it_formats() {
        for us in [
            0u64,
            1_447_948_399_281_155,
            1_795_341_600_000_000,
            4_102_444_800_999_999,
        ] {
            assert_eq!(parse_rfc3339_us(&format_rfc3339_us(us)), Ok(us));
        }
    }

    #[test]
    fn parses_offsets_and_short_fractions() {
        let utc = parse_rfc3339_us("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(utc, 1_795_341_600_000_000);
        assert_eq!(parse_rfc3339_us("2026-11-22T11:30:00+01:30"), Ok(utc));
        assert_eq!(parse_rfc3339_us("2026-11-22T09:00:00-01:00"), Ok(utc));
        assert_eq!(
            parse_rfc3339_us("2026-11-22T10:00:00.5Z"),
            Ok(utc + 500_000)
        );
        assert_eq!(
            parse_rfc3339_us("2026-11-22T10:00:00.123456789Z"),
            Ok(utc + 123_456)
        );
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T10:00:00",
            "2026-13-22T10:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2026/11/22T10:00:00Z",
            "2026-11-22T10:00:00+0100",
        ] {
            assert!(parse_rfc3339_us(bad).is_err(), "{bad}");
        }
    }
}
