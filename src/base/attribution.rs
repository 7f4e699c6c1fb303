//! Attribution: what the caller says about where a message came from, kept
//! with it from intake on: `cwd` (the caller's working directory), `argv`
//! (vsendmail's own command line), `caller` (the parent process's executable
//! and command line, where readable) and `script` (PHP's
//! `X-PHP-Originating-Script: UID:FILE`). The caller controls every one of
//! them: they are leads for the abuse desk, never proof (the real uid is
//! what is enforced). Each is printable (control characters escaped) and at
//! most [`MAX_VALUE`] bytes; in log lines each goes through
//! [`crate::base::syslog::value`], so none can pass for another field.

use crate::base::syslog::{MAX_VALUE, cut, value};
use serde::{Deserialize, Serialize};

/// The four leads; `""` when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub argv: String,
    #[serde(default)]
    pub caller: String,
    #[serde(default)]
    pub script: String,
}

impl Attribution {
    /// ` cwd=… script=… argv=… caller=…` for a log line (the fields that are
    /// known), each bounded and quoted as `syslog::value` does.
    pub fn log_fields(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("cwd", &self.cwd),
            ("script", &self.script),
            ("argv", &self.argv),
            ("caller", &self.caller),
        ] {
            if !v.is_empty() {
                s.push(' ');
                s.push_str(k);
                s.push('=');
                s.push_str(&value(v));
            }
        }
        s
    }
}

/// `s` made printable (control characters escaped) and bounded.
pub fn clean(s: &str) -> String {
    let mut o = String::with_capacity(s.len().min(MAX_VALUE));
    for c in s.chars() {
        if o.len() > MAX_VALUE {
            break;
        }
        if c.is_control() {
            o.extend(c.escape_default());
        } else {
            o.push(c);
        }
    }
    cut(&o, MAX_VALUE).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_and_quoted() {
        let a = Attribution {
            cwd: "/home/a/wp-content/plugins/x y".into(),
            script: clean("1001:/x.php\nuser=root"),
            argv: String::new(),
            caller: "/usr/bin/php".into(),
        };
        assert_eq!(
            a.log_fields(),
            r#" cwd="/home/a/wp-content/plugins/x y" script="1001:/x.php\\nuser=root" caller=/usr/bin/php"#
        );
        assert!(clean(&"x".repeat(10_000)).len() <= MAX_VALUE);
    }
}
