//! Benchmark SMTP receiver (`make bench` only): accepts every message on a
//! loopback port and throws it away, counting what it saw.
//!
//! Built by `bench/run.sh` with plain `rustc` (std only, no crate graph), so it
//! never competes with the product's build. One thread per connection; replies
//! are buffered and flushed only when no pipelined input is waiting, as a real
//! server (Postfix's smtpd) does. It offers PIPELINING, 8BITMIME, SIZE,
//! ENHANCEDSTATUSCODES and SMTPUTF8, no STARTTLS and no AUTH.
//!
//! Counters (connections that said EHLO/HELO, messages, recipients, body bytes,
//! messages carrying a DKIM-Signature header, connections from a peer address
//! other than `--expect-src`, the most messages seen on one connection) are read
//! and reset with the private commands `XSTAT` and `XRESET` on a connection that
//! never says EHLO, so reading them does not count as a connection.
//!
//! Usage: `sink [--bind 127.0.0.1] [--expect-src 127.0.0.2]`; prints the port
//! it listens on (picked by the kernel) as the first line on stdout. It exits
//! by itself when its parent process goes away.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
struct Stats {
    conns: AtomicU64,
    msgs: AtomicU64,
    rcpts: AtomicU64,
    bytes: AtomicU64,
    dkim: AtomicU64,
    foreign: AtomicU64,
    max_per_conn: AtomicU64,
}

impl Stats {
    fn line(&self) -> String {
        format!(
            "conns={} msgs={} rcpts={} bytes={} dkim={} foreign={} max_per_conn={}",
            self.conns.load(Relaxed),
            self.msgs.load(Relaxed),
            self.rcpts.load(Relaxed),
            self.bytes.load(Relaxed),
            self.dkim.load(Relaxed),
            self.foreign.load(Relaxed),
            self.max_per_conn.load(Relaxed)
        )
    }
    fn reset(&self) {
        for c in [
            &self.conns,
            &self.msgs,
            &self.rcpts,
            &self.bytes,
            &self.dkim,
            &self.foreign,
            &self.max_per_conn,
        ] {
            c.store(0, Relaxed);
        }
    }
}

fn main() {
    let mut bind = "127.0.0.1".to_string();
    let mut expect: Option<IpAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bind" => bind = args.next().expect("--bind ADDR"),
            "--expect-src" => {
                expect = Some(
                    args.next()
                        .expect("--expect-src ADDR")
                        .parse()
                        .expect("address"),
                )
            }
            _ => {
                eprintln!("usage: sink [--bind ADDR] [--expect-src ADDR]");
                std::process::exit(64);
            }
        }
    }
    let ip: IpAddr = bind.parse().expect("bind address");
    assert!(
        ip.is_loopback(),
        "the bench receiver listens on loopback only"
    );
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    println!("{port}");
    std::io::stdout().flush().ok();
    exit_with_parent();
    let stats = Arc::new(Stats::default());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let stats = Arc::clone(&stats);
        std::thread::spawn(move || {
            let _ = session(conn, &stats, expect);
        });
    }
}

/// Exits when the process that started us (bench/run.sh) is gone, even if it
/// was killed with SIGKILL and could not clean up.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
        }
    });
}

fn session(conn: TcpStream, stats: &Stats, expect: Option<IpAddr>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let peer = conn.peer_addr()?.ip();
    let mut rd = BufReader::with_capacity(64 * 1024, conn.try_clone()?);
    let mut wr = BufWriter::new(conn);
    let mut line = Vec::with_capacity(1024);
    let mut greeted = false;
    let mut in_conn = 0u64;
    wr.write_all(b"220 sink.bench ESMTP\r\n")?;
    wr.flush()?;
    loop {
        line.clear();
        if rd.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let verb: Vec<u8> = line
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .map(|b| b.to_ascii_uppercase())
            .collect();
        match verb.as_slice() {
            b"EHLO" | b"HELO" => {
                if !greeted {
                    greeted = true;
                    stats.conns.fetch_add(1, Relaxed);
                    if expect.is_some_and(|e| e != peer) {
                        stats.foreign.fetch_add(1, Relaxed);
                    }
                }
                if verb == b"EHLO" {
                    wr.write_all(
                        b"250-sink.bench\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n\
                          250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n",
                    )?;
                } else {
                    wr.write_all(b"250 sink.bench\r\n")?;
                }
            }
            b"MAIL" => wr.write_all(b"250 2.1.0 Ok\r\n")?,
            b"RCPT" => {
                stats.rcpts.fetch_add(1, Relaxed);
                wr.write_all(b"250 2.1.5 Ok\r\n")?
            }
            b"DATA" => {
                wr.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                wr.flush()?;
                let (n, dkim) = read_data(&mut rd, &mut line)?;
                stats.bytes.fetch_add(n, Relaxed);
                if dkim {
                    stats.dkim.fetch_add(1, Relaxed);
                }
                stats.msgs.fetch_add(1, Relaxed);
                in_conn += 1;
                stats.max_per_conn.fetch_max(in_conn, Relaxed);
                wr.write_all(b"250 2.0.0 Ok: queued\r\n")?;
            }
            b"RSET" | b"NOOP" => wr.write_all(b"250 2.0.0 Ok\r\n")?,
            b"QUIT" => {
                wr.write_all(b"221 2.0.0 Bye\r\n")?;
                wr.flush()?;
                break;
            }
            b"XSTAT" => wr.write_all(format!("250 {}\r\n", stats.line()).as_bytes())?,
            b"XRESET" => {
                stats.reset();
                wr.write_all(b"250 reset\r\n")?
            }
            _ => wr.write_all(b"502 5.5.2 Error: command not recognized\r\n")?,
        }
        if rd.buffer().is_empty() {
            wr.flush()?;
        }
    }
    Ok(())
}

/// Reads the DATA payload up to the lone dot; returns its size and whether a
/// DKIM-Signature header came before the first empty line.
fn read_data(rd: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> std::io::Result<(u64, bool)> {
    let mut n = 0u64;
    let mut in_header = true;
    let mut dkim = false;
    loop {
        line.clear();
        if rd.read_until(b'\n', line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok((n, dkim));
        }
        n += line.len() as u64;
        if in_header {
            if line == b"\r\n" || line == b"\n" {
                in_header = false;
            } else if line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"DKIM-Signature:") {
                dkim = true;
            }
        }
    }
}
