//! SMTP replies, read as hostile input: every line bounded in length, the
//! number of lines bounded (OpenSMTPD CVE-2020-8794), codes checked to be
//! three digits and the same on every line.

use std::fmt;

/// Longest reply line we accept (RFC 5321 says 512; real servers send more).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO reply has a dozen).
pub const MAX_LINES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The server asks us to slow down: `421`, or a `4xx` with enhanced
    /// code `4.7.x` (rate limiting, reputation), see `deliver::backoff`.
    pub fn asks_to_slow_down(&self) -> bool {
        if self.code == 421 {
            return true;
        }
        let enhanced = self
            .lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        (400..500).contains(&self.code)
            && enhanced.strip_prefix("4.7.").is_some_and(|d| {
                !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit())
            })
    }

    /// A reply we make up for an event without one (timeout, lost connection).
    pub fn synthetic(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_string()],
        }
    }

    /// Parse one line: `Some((code, is_last, text))`.
    pub fn parse_line(line: &str) -> Option<(u16, bool, String)> {
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
            return None;
        }
        let code: u16 = line[..3].parse().ok()?;
        match b.get(3) {
            None => Some((code, true, String::new())),
            Some(b' ') => Some((code, true, line[4..].to_string())),
            Some(b'-') => Some((code, false, line[4..].to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for Reply {
    /// One line: `550 5.1.1 no such user` (continuation lines joined with " / ").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        for (i, l) in self.lines.iter().enumerate() {
            if i == 0 {
                write!(f, " {}", clean(l))?;
            } else {
                write!(f, " / {}", clean(l))?;
            }
        }
        Ok(())
    }
}

/// Printable text only: a reply is shown in logs and on terminals.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_LINE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        assert_eq!(
            Reply::parse_line("250-PIPELINING"),
            Some((250, false, "PIPELINING".into()))
        );
        assert_eq!(Reply::parse_line("250 OK"), Some((250, true, "OK".into())));
        assert_eq!(Reply::parse_line("250"), Some((250, true, String::new())));
        assert_eq!(Reply::parse_line("25"), None);
        assert_eq!(Reply::parse_line("abc def"), None);
        assert_eq!(Reply::parse_line("250xOK"), None);
        assert_eq!(Reply::parse_line("650 x"), None);
    }

    #[test]
    fn display() {
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 no such user".into(), "second\x1b[31m".into()],
        };
        assert_eq!(r.to_string(), "550 5.1.1 no such user / second?[31m");
        assert!(r.is_permanent());
    }

    #[test]
    fn slow_down_replies() {
        let r = |code, text: &str| Reply {
            code,
            lines: vec![text.into()],
        };
        assert!(r(421, "mx.test closing").asks_to_slow_down());
        assert!(r(450, "4.7.28 rate limited").asks_to_slow_down());
        assert!(r(451, "4.7.1 greylisted").asks_to_slow_down());
        assert!(!r(451, "4.3.0 try later").asks_to_slow_down());
        assert!(!r(550, "5.7.1 no").asks_to_slow_down());
        assert!(!r(450, "4.7.x").asks_to_slow_down());
    }
}
