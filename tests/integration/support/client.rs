//! A minimal hand-written SMTP client for tests that speak to a receiver
//! directly (the sink, a private Postfix): commands out, whole replies in.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Client {
    /// The reading side (buffered).
    pub r: BufReader<TcpStream>,
    /// The writing side, also for socket options.
    pub w: TcpStream,
}

impl Client {
    /// Connect (the greeting is left for the caller to read).
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Read one (possibly multi-line) reply; "" at EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Write raw bytes.
    pub fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    /// One command line, then its reply.
    pub fn cmd(&mut self, s: &str) -> String {
        self.send(&format!("{s}\r\n"));
        self.reply()
    }
}
