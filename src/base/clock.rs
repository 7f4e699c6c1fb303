//! Wall-clock time: Unix seconds and milliseconds, the local-time text
//! forms vsendmail writes (RFC 5322 `Date:`, the syslog stamp, mailq's
//! arrival column), all from one `localtime_r`, and the UTC calendar of the
//! audit trail (its file names and RFC 3339 stamps), with jiff.

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A Unix time broken down in the local time zone.
struct Local(libc::tm);

impl Local {
    fn at(t: i64) -> Local {
        // SAFETY: localtime_r fills the tm we own.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            let tt: libc::time_t = t as libc::time_t;
            libc::localtime_r(&tt, &mut tm);
            Local(tm)
        }
    }

    fn day(&self) -> &'static str {
        DAYS[self.0.tm_wday.clamp(0, 6) as usize]
    }

    fn month(&self) -> &'static str {
        MONTHS[self.0.tm_mon.clamp(0, 11) as usize]
    }

    fn hms(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}",
            self.0.tm_hour, self.0.tm_min, self.0.tm_sec
        )
    }
}

/// `Sun, 29 Nov 2026 05:05:07 +0000`
pub fn rfc5322_date(t: i64) -> String {
    let l = Local::at(t);
    let off = l.0.tm_gmtoff / 60;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!(
        "{}, {} {} {} {} {}{:02}{:02}",
        l.day(),
        l.0.tm_mday,
        l.month(),
        l.0.tm_year + 1900,
        l.hms(),
        sign,
        off / 60,
        off % 60
    )
}

/// `Nov 29 05:05:07` (RFC 3164).
pub fn syslog_stamp(t: i64) -> String {
    let l = Local::at(t);
    format!("{} {:>2} {}", l.month(), l.0.tm_mday, l.hms())
}

/// `Sun Nov 29 05:05:07`, as Postfix's mailq prints the arrival time.
pub fn mailq_stamp(t: i64) -> String {
    let l = Local::at(t);
    format!("{} {} {:>2} {}", l.day(), l.month(), l.0.tm_mday, l.hms())
}

/// `YYYY-MM-DD`, the UTC date of a Unix time.
pub fn utc_date(t: i64) -> String {
    utc(t).date().to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) of a Unix time.
pub fn rfc3339_utc(t: i64) -> String {
    let dt = utc(t);
    format!("{}T{}Z", dt.date(), dt.time().strftime("%H:%M:%S"))
}

/// The Unix time of midnight UTC of a `YYYY-MM-DD` date (validated: no
/// 2026-11-31); `None` when the text is not such a date.
pub fn utc_midnight(date: &str) -> Option<i64> {
    if date.len() != 10 || !date.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let d: jiff::civil::Date = date.parse().ok()?;
    let ts = jiff::tz::Offset::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .ok()?;
    Some(ts.as_second())
}

fn utc(t: i64) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_second(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    jiff::tz::Offset::UTC.to_datetime(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_agree() {
        let t = 1_764_392_707; // a Saturday in November 2025, whatever the zone's day
        let d = rfc5322_date(t);
        let p: Vec<&str> = d.split_whitespace().collect();
        assert_eq!(syslog_stamp(t), format!("{} {:>2} {}", p[2], p[1], p[4]));
        assert_eq!(
            mailq_stamp(t),
            format!(
                "{} {} {:>2} {}",
                p[0].trim_end_matches(','),
                p[2],
                p[1],
                p[4]
            )
        );
    }

    #[test]
    fn utc_calendar() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_435_384), "2026-11-23T12:03:04Z");
        assert_eq!(utc_date(1_795_435_384), "2026-11-23");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(
            utc_midnight("2026-11-23"),
            Some(1_795_435_384 / 86400 * 86400)
        );
        assert_eq!(utc_midnight("2024-02-29"), Some(19_782 * 86400));
        for bad in [
            "2026-11-31",
            "2025-02-29",
            "2026-13-01",
            "x026-11-23",
            "2026-11-2",
            "+02026-11-23",
        ] {
            assert_eq!(utc_midnight(bad), None, "{bad}");
        }
        for d in [-1000i64, 0, 59, 60, 11_016, 20_000, 30_000] {
            assert_eq!(utc_midnight(&utc_date(d * 86400)), Some(d * 86400));
        }
    }
}
