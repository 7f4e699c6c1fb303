//! Rate limits as written in the config and virtusers: one or more windows
//! `COUNT/PERIOD[,COUNT/PERIOD…]` (`500/h`, `3/10s`, `100/h,1000/d`) or
//! `none`; and the breaker's share `PCT%/MIN` (`50%/20`). Parsed once, where
//! the file is read; everything after that holds a [`Rate`] or a [`Share`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A limit: `count` messages (or recipients) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub period: Duration,
}

impl Limit {
    /// `500/h`, `3/10s`, `200/d`: one window.
    pub fn parse(s: &str) -> Result<Limit, String> {
        let (c, p) = s
            .split_once('/')
            .ok_or("expected COUNT/PERIOD such as 500/h or 3/10s, or none")?;
        let count: u32 = c.parse().map_err(|_| format!("`{c}` is not a count"))?;
        if count == 0 {
            return Err("count must be at least 1 (use none for no limit)".into());
        }
        Ok(Limit {
            count,
            period: parse_period(p)?,
        })
    }

    /// `500/1h`, as the messages print it.
    pub fn text(&self) -> String {
        format!("{}/{}", self.count, period_text(self.period))
    }
}

/// `h`, `10s`, `2d`: a period of a limit.
fn parse_period(p: &str) -> Result<Duration, String> {
    let (num, unit) = p.split_at(p.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(p.len()));
    let n: u64 = if num.is_empty() {
        1
    } else {
        num.parse()
            .map_err(|_| format!("`{num}` is not a number"))?
    };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("period unit `{unit}`: use s, m, h or d")),
    };
    if n == 0 {
        return Err("period must be positive".into());
    }
    Ok(Duration::from_secs(n * secs))
}

/// A `rate` setting: one or more windows that all apply, or `none` (which
/// overrides the config's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rate {
    Unlimited,
    Limits(Vec<Limit>),
}

impl Rate {
    /// `500/h`, `3/10s`, `100/h,1000/d`, `none`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        if s == "none" {
            return Ok(Rate::Unlimited);
        }
        let mut v = Vec::new();
        for part in s.split(',') {
            let l = Limit::parse(part.trim())?;
            if v.iter().any(|x: &Limit| x.period == l.period) {
                return Err(format!(
                    "two limits for the same period {}",
                    period_text(l.period)
                ));
            }
            v.push(l);
        }
        Ok(Rate::Limits(v))
    }

    /// The windows (empty: no limit).
    pub fn limits(&self) -> &[Limit] {
        match self {
            Rate::Unlimited => &[],
            Rate::Limits(v) => v,
        }
    }
}

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(s: String) -> Result<Rate, String> {
        Rate::parse(&s)
    }
}

impl From<Rate> for String {
    fn from(r: Rate) -> String {
        match r {
            Rate::Unlimited => "none".into(),
            Rate::Limits(v) => v.iter().map(Limit::text).collect::<Vec<_>>().join(","),
        }
    }
}

/// The breaker's `failures = "50%/20"`: trip when at least `percent` of the
/// recipients tried are failed or deferred, once `min` were tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub percent: u32,
    pub min: u32,
}

impl Share {
    pub fn parse(s: &str) -> Result<Share, String> {
        let bad = || format!("expected PERCENT%/MINIMUM such as 50%/20, not `{s}`");
        let (p, m) = s.split_once("%/").ok_or_else(bad)?;
        let percent: u32 = p.parse().map_err(|_| bad())?;
        let min: u32 = m.parse().map_err(|_| bad())?;
        if percent == 0 || percent > 100 || min == 0 {
            return Err(format!(
                "`{s}`: the percentage is 1 to 100 and the minimum at least 1"
            ));
        }
        Ok(Share { percent, min })
    }
}

/// `10s`, `1h`, `2d`: a period as the messages print it.
pub fn period_text(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            Rate::parse("3/10s").unwrap(),
            Rate::Limits(vec![Limit {
                count: 3,
                period: Duration::from_secs(10)
            }])
        );
        assert_eq!(
            Rate::parse("500/h").unwrap().limits()[0].period,
            Duration::from_secs(3600)
        );
        let two = Rate::parse("100/h,1000/d").unwrap();
        assert_eq!(two.limits().len(), 2);
        assert_eq!(two.limits()[1].count, 1000);
        assert_eq!(Rate::parse("none").unwrap(), Rate::Unlimited);
        assert!(Rate::parse("0/h").is_err());
        assert!(Rate::parse("5/x").is_err());
        assert!(Rate::parse("5").is_err());
        assert!(Rate::parse("5/h,").is_err());
        assert!(Rate::parse("5/h,9/1h").is_err());
    }

    #[test]
    fn text_round_trip() {
        for s in ["500/h", "3/10s", "none", "200/2d", "7/90s", "100/h,1000/d"] {
            let r = Rate::parse(s).unwrap();
            assert_eq!(Rate::parse(&String::from(r.clone())).unwrap(), r, "{s}");
        }
    }

    #[test]
    fn shares() {
        assert_eq!(
            Share::parse("50%/20").unwrap(),
            Share {
                percent: 50,
                min: 20
            }
        );
        for bad in ["50/20", "0%/20", "101%/5", "50%/0", "x%/1", "50%"] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods() {
        assert_eq!(period_text(Duration::from_secs(10)), "10s");
        assert_eq!(period_text(Duration::from_secs(3600)), "1h");
        assert_eq!(period_text(Duration::from_secs(120)), "2m");
        assert_eq!(period_text(Duration::from_secs(172800)), "2d");
        assert_eq!(period_text(Duration::from_secs(90)), "90s");
    }
}
