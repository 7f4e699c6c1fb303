//! Rate limits as written in the config and virtusers: `COUNT/PERIOD`
//! (`500/h`, `3/10s`, `200/d`) or `none`. Parsed once, where the file is
//! read; everything after that holds a [`Rate`].

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A limit: `count` messages per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub period: Duration,
}

/// A `rate` setting: a limit, or `none` (which overrides the config's `rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rate {
    Unlimited,
    Limit(Limit),
}

impl Rate {
    /// `500/h`, `3/10s`, `200/d`, `none`.
    pub fn parse(s: &str) -> Result<Rate, String> {
        if s == "none" {
            return Ok(Rate::Unlimited);
        }
        let (c, p) = s
            .split_once('/')
            .ok_or("expected COUNT/PERIOD such as 500/h or 3/10s, or none")?;
        let count: u32 = c.parse().map_err(|_| format!("`{c}` is not a count"))?;
        if count == 0 {
            return Err("count must be at least 1 (use none for no limit)".into());
        }
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
        Ok(Rate::Limit(Limit {
            count,
            period: Duration::from_secs(n * secs),
        }))
    }

    /// The limit, if any.
    pub fn limit(self) -> Option<Limit> {
        match self {
            Rate::Unlimited => None,
            Rate::Limit(l) => Some(l),
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
            Rate::Limit(l) => format!("{}/{}", l.count, period_text(l.period)),
        }
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
            Rate::Limit(Limit {
                count: 3,
                period: Duration::from_secs(10)
            })
        );
        assert_eq!(
            Rate::parse("500/h").unwrap().limit().unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(Rate::parse("none").unwrap(), Rate::Unlimited);
        assert!(Rate::parse("0/h").is_err());
        assert!(Rate::parse("5/x").is_err());
        assert!(Rate::parse("5").is_err());
    }

    #[test]
    fn text_round_trip() {
        for s in ["500/h", "3/10s", "none", "200/2d", "7/90s"] {
            let r = Rate::parse(s).unwrap();
            assert_eq!(Rate::parse(&String::from(r)).unwrap(), r, "{s}");
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
