//! Benchmark DNS server (`make bench` only): answers, on a loopback UDP port,
//! the few names the direct-delivery section asks for, every answer with the
//! AD bit set (as a local validating resolver would for a signed zone):
//!
//! - `dest.example MX 10 mx.dest.example`, `mx.dest.example A 127.0.0.1`
//! - `_mta-sts.dest.example TXT "v=STSv1; id=bench1"`
//! - `_25._tcp.mx.dest.example`: exists, no TLSA (NOERROR, no answer)
//! - anything else: NXDOMAIN.
//!
//! Built by `bench/run.sh` with plain `rustc` (std only). Prints its port as
//! the first line on stdout; exits when its parent process goes away.

use std::net::UdpSocket;

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for l in name.split('.').filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// (name, type) -> rdatas; `None`: NXDOMAIN.
fn lookup(name: &str, qtype: u16) -> Option<Vec<(u16, Vec<u8>)>> {
    const A: u16 = 1;
    const MX: u16 = 15;
    const TXT: u16 = 16;
    let one = |t: u16, d: Vec<u8>| if qtype == t { vec![(t, d)] } else { vec![] };
    match name {
        "dest.example" => {
            let mut d = vec![0, 10];
            encode_name(&mut d, "mx.dest.example");
            Some(one(MX, d))
        }
        "mx.dest.example" => Some(one(A, vec![127, 0, 0, 1])),
        "_mta-sts.dest.example" => {
            let t = b"v=STSv1; id=bench1";
            let mut d = vec![t.len() as u8];
            d.extend_from_slice(t);
            Some(one(TXT, d))
        }
        "_25._tcp.mx.dest.example" => Some(vec![]),
        _ => None,
    }
}

fn answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let n = *q.get(i)? as usize;
        i += 1;
        if n == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + n)?).to_ascii_lowercase());
        i += n;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qend = i + 4;
    let question = q.get(12..qend)?;
    let name = labels.join(".");
    let found = lookup(&name, qtype);
    let rcode = if found.is_none() { 3 } else { 0 };
    let answers = found.unwrap_or_default();
    let mut r = Vec::with_capacity(128);
    r.extend_from_slice(&q[0..2]);
    r.push(0x80 | (q[2] & 0x79) | 0x04); // QR, opcode and RD copied, AA
    r.push(0x80 | 0x20 | rcode); // RA, AD
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    for (t, d) in answers {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
        r.extend_from_slice(&(d.len() as u16).to_be_bytes());
        r.extend_from_slice(&d);
    }
    Some(r)
}

fn main() {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("dns: bind");
    println!("{}", sock.local_addr().unwrap().port());
    let parent = std::os::unix::process::parent_id();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 1500];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(r) = answer(&buf[..n]) {
                    let _ = sock.send_to(&r, from);
                }
            }
            Err(_) => {
                if std::os::unix::process::parent_id() != parent {
                    return;
                }
            }
        }
    }
}
