//! The floor of `make bench`: the least a sendmail-like client must do to hand
//! one message to an SMTP server from a bound source address, with nothing
//! else (no config, no identity look-up, no spool, no logging).
//!
//! It reads the message from stdin (as sendmail would), creates a socket,
//! binds the source address before connect, connects, checks with
//! getsockname() that the source really is the bound one, then speaks EHLO,
//! MAIL, one RCPT per recipient, DATA, the message and the final dot in one
//! write, QUIT, and exits 0 only if every reply was positive.
//!
//! Usage: `bench_floor SRC_IP SERVER_PORT SENDER RCPT... < message`
//! (the server is 127.0.0.1; the message should already use CRLF).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use socket2::{Domain, Socket, Type};

fn fail(msg: &str) -> ! {
    eprintln!("bench_floor: {msg}");
    std::process::exit(75)
}

/// Reads one (possibly multi-line) reply and returns its code.
fn reply(rd: &mut BufReader<&TcpStream>, line: &mut String) -> u16 {
    loop {
        line.clear();
        match rd.read_line(line) {
            Ok(0) | Err(_) => fail("connection closed"),
            Ok(_) => {}
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
}

fn cmd(s: &TcpStream, rd: &mut BufReader<&TcpStream>, line: &mut String, c: &str, want: u16) {
    (&*s)
        .write_all(c.as_bytes())
        .unwrap_or_else(|e| fail(&format!("write: {e}")));
    let code = reply(rd, line);
    if code / 100 != want / 100 {
        fail(&format!("{} -> {}", c.trim_end(), line.trim_end()));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: bench_floor SRC_IP SERVER_PORT SENDER RCPT... < message");
        std::process::exit(64);
    }
    let src: IpAddr = args[0]
        .parse()
        .unwrap_or_else(|_| fail("bad source address"));
    let port: u16 = args[1].parse().unwrap_or_else(|_| fail("bad port"));
    let mut body = Vec::with_capacity(4096);
    std::io::stdin()
        .read_to_end(&mut body)
        .unwrap_or_else(|e| fail(&format!("stdin: {e}")));
    // Dot-stuffing (a leading "." doubled) and the final dot, so the payload
    // goes out in one write.
    let mut data = Vec::with_capacity(body.len() + 16);
    let mut at_line_start = true;
    for &b in &body {
        if at_line_start && b == b'.' {
            data.push(b'.');
        }
        data.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");

    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)
        .unwrap_or_else(|e| fail(&format!("socket: {e}")));
    sock.bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| fail(&format!("bind {src}: {e}")));
    sock.connect(&server.into())
        .unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let s: TcpStream = sock.into();
    match s.local_addr() {
        Ok(a) if a.ip() == src => {}
        other => fail(&format!("source is {other:?}, not {src}")),
    }
    let mut rd = BufReader::new(&s);
    let mut line = String::new();
    if reply(&mut rd, &mut line) != 220 {
        fail(&format!("greeting: {}", line.trim_end()));
    }
    cmd(&s, &mut rd, &mut line, "EHLO bench.example\r\n", 250);
    cmd(
        &s,
        &mut rd,
        &mut line,
        &format!("MAIL FROM:<{}>\r\n", args[2]),
        250,
    );
    for r in &args[3..] {
        cmd(&s, &mut rd, &mut line, &format!("RCPT TO:<{r}>\r\n"), 250);
    }
    cmd(&s, &mut rd, &mut line, "DATA\r\n", 354);
    (&s).write_all(&data)
        .unwrap_or_else(|e| fail(&format!("write: {e}")));
    if reply(&mut rd, &mut line) / 100 != 2 {
        fail(&format!("end of data: {}", line.trim_end()));
    }
    cmd(&s, &mut rd, &mut line, "QUIT\r\n", 221);
}
