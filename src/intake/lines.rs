//! Splitting untrusted input into lines: `\r\n`, bare `\n` and bare `\r` all end
//! a line (so PHP's mixed line ends and the SMTP-smuggling sequences
//! `\n.\r\n` / `\r.\n` become ordinary lines), with a hard length bound so a
//! line without end cannot exhaust memory.

use std::io::{self, BufRead};

/// What `next_line` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (terminator removed), and whether it had a terminator.
    Text {
        terminated: bool,
    },
    /// The line exceeded the bound; `buf` holds its first `max` bytes.
    TooLong,
    Eof,
}

/// Read one line into `buf` (cleared first).
pub fn next_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let done = |too_long: bool| {
        Ok(if too_long {
            Line::TooLong
        } else {
            Line::Text { terminated: true }
        })
    };
    loop {
        let avail = fill(r)?;
        if avail.is_empty() {
            if buf.is_empty() && !too_long {
                return Ok(Line::Eof);
            }
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text { terminated: false }
            });
        }
        match memchr::memchr2(b'\n', b'\r', avail) {
            Some(i) => {
                let is_cr = avail[i] == b'\r';
                push_bounded(buf, &avail[..i], max, &mut too_long);
                r.consume(i + 1);
                if is_cr && fill(r)?.first() == Some(&b'\n') {
                    r.consume(1);
                }
                return done(too_long);
            }
            None => {
                let n = avail.len();
                push_bounded(buf, avail, max, &mut too_long);
                r.consume(n);
            }
        }
    }
}

fn fill<R: BufRead>(r: &mut R) -> io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    r.fill_buf()
}

fn push_bounded(buf: &mut Vec<u8>, data: &[u8], max: usize, too_long: &mut bool) {
    let room = max.saturating_sub(buf.len());
    if data.len() > room {
        *too_long = true;
        buf.extend_from_slice(&data[..room]);
    } else {
        buf.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<(Vec<u8>, Line)> {
        let mut r = io::BufReader::with_capacity(cap, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let l = next_line(&mut r, &mut buf, 20).unwrap();
            if l == Line::Eof {
                return out;
            }
            out.push((buf.clone(), l));
        }
    }

    #[test]
    fn all_line_ends_split() {
        for cap in [1, 2, 3, 64] {
            let got = lines(b"a\r\nb\nc\rd\r\n\r\n.\r\ne", cap);
            let texts: Vec<&[u8]> = got.iter().map(|(b, _)| b.as_slice()).collect();
            assert_eq!(
                texts,
                vec![&b"a"[..], b"b", b"c", b"d", b"", b".", b"e"],
                "cap {cap}"
            );
            assert_eq!(got.last().unwrap().1, Line::Text { terminated: false });
        }
    }

    #[test]
    fn smuggling_sequences_become_lines() {
        let got = lines(b"x\n.\r\ny\r.\nz\n", 4);
        let texts: Vec<&[u8]> = got.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(texts, vec![&b"x"[..], b".", b"y", b".", b"z"]);
    }

    #[test]
    fn too_long_is_flagged() {
        let got = lines(&[b'x'; 50], 8);
        assert_eq!(got[0].1, Line::TooLong);
        assert_eq!(got[0].0.len(), 20);
    }
}
