//! The receiver of `make demo`: a real SMTP server on 127.0.0.1 (the test
//! suite's sink, included from tests/integration/support/sink.rs) plus a
//! syslog socket, which prints what it saw when its stdin closes.
//!
//! Usage: `demo_sink [--syslog PATH]`. It prints `listening 127.0.0.1:PORT` on
//! its first line, then waits until stdin reaches end of file, then prints
//! every connection (peer address, HELO, the client's commands), every
//! message (envelope and header fields) and the syslog lines it collected.

#[path = "../tests/integration/support/sink.rs"]
#[allow(dead_code)]
mod sink;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let syslog_path = args
        .iter()
        .position(|a| a == "--syslog")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = None;
    if let Some(path) = &syslog_path {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).expect("demo_sink: cannot bind the syslog socket");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .expect("demo_sink: chmod syslog socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("demo_sink: socket timeout");
        let (log, stop) = (log.clone(), stop.clone());
        reader = Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                // Once told to stop, take what is still queued and finish.
                let stopping = stop.load(Ordering::SeqCst);
                if stopping {
                    sock.set_nonblocking(true).expect("demo_sink: nonblocking");
                }
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let line = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                        log.lock().unwrap().push(line);
                    }
                    Err(_) if stopping => break,
                    Err(_) => {}
                }
            }
        }));
    }

    let sink = sink::Sink::start_default();
    println!("listening {}", sink.addr());
    std::io::stdout().flush().unwrap();

    // Wait for the demo script to close our stdin.
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    stop.store(true, Ordering::SeqCst);
    if let Some(r) = reader {
        let _ = r.join();
    }

    let mut out = String::new();
    let conns = sink.connections();
    out.push_str(&format!(
        "The receiver accepted {} connection(s):\n",
        conns.len()
    ));
    for (i, c) in conns.iter().enumerate() {
        out.push_str(&format!("\n  connection {}\n", i + 1));
        out.push_str(&format!("    peer address : {}\n", c.peer));
        out.push_str(&format!("    {:<13}: {}\n", c.helo_cmd, c.helo));
        out.push_str("    dialogue     :\n");
        for cmd in &c.commands {
            out.push_str(&format!("      C: {cmd}\n"));
        }
    }
    for (i, m) in sink.messages().iter().enumerate() {
        out.push_str(&format!("\n  message {}\n", i + 1));
        out.push_str(&format!("    from peer    : {}\n", m.peer));
        out.push_str(&format!("    HELO name    : {}\n", m.helo));
        let params = if m.mail_params.is_empty() {
            String::new()
        } else {
            format!(" {}", m.mail_params)
        };
        out.push_str(&format!("    MAIL FROM    : <{}>{params}\n", m.mail_from));
        for r in &m.rcpts {
            out.push_str(&format!("    RCPT TO      : <{r}>\n"));
        }
        out.push_str(&format!("    size         : {} bytes\n", m.data.len()));
        out.push_str("    header fields:\n");
        for (name, value) in m.header_fields() {
            // Unfolded values keep the folding white space; show it as spaces.
            let value = value.replace('\t', " ");
            out.push_str(&format!("      {name}: {value}\n"));
        }
        out.push_str("    body:\n");
        for line in String::from_utf8_lossy(m.body()).lines() {
            out.push_str(&format!("      | {line}\n"));
        }
    }
    if syslog_path.is_some() {
        let lines = log.lock().unwrap().clone();
        out.push_str(&format!("\n  syslog lines ({}):\n", lines.len()));
        for l in lines {
            out.push_str(&format!("    {l}\n"));
        }
    }
    print!("{out}");
    if let Some(path) = &syslog_path {
        let _ = std::fs::remove_file(path);
    }
}
