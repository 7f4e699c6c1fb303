//! A real, authoritative DNS server on a loopback port (UDP and TCP), for tests.
//!
//! It owns the test zones: a [`Zone`] built by the test (MX, null MX, A, AAAA,
//! TXT, PTR, CNAME) is served by [`DnsServer`] on `127.0.0.1:PORT` over real
//! sockets, so the product's resolver (`dns = ["127.0.0.1:PORT"]`) and
//! `dig @127.0.0.1 -p PORT` can query it. The wire format is hickory-proto's.
//! Answers carry the AA flag; an unknown name is NXDOMAIN, a known name
//! without records of the asked type is NOERROR with no answers (both with an
//! SOA in the authority section, negative TTL 0). Every question is recorded.
//! [`Zone::tlsa`] serves TLSA records; [`Zone::authenticated`] marks names
//! whose answers carry the AD bit, as a local validating resolver would.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TLSA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

const TTL: u32 = 300;

#[derive(Clone, Debug)]
enum Rr {
    Mx(u16, String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Ptr(String),
    Cname(String),
    Tlsa(u8, u8, u8, Vec<u8>),
}

impl Rr {
    fn rtype(&self) -> RecordType {
        match self {
            Rr::Mx(..) => RecordType::MX,
            Rr::A(_) => RecordType::A,
            Rr::Aaaa(_) => RecordType::AAAA,
            Rr::Txt(_) => RecordType::TXT,
            Rr::Ptr(_) => RecordType::PTR,
            Rr::Cname(_) => RecordType::CNAME,
            Rr::Tlsa(..) => RecordType::TLSA,
        }
    }

    fn rdata(&self) -> RData {
        match self {
            Rr::Mx(pref, host) => RData::MX(MX::new(*pref, fqdn(host))),
            Rr::A(ip) => RData::A(A(*ip)),
            Rr::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Rr::Txt(text) => {
                let chunks: Vec<&[u8]> = if text.is_empty() {
                    vec![&[][..]]
                } else {
                    text.as_bytes().chunks(255).collect()
                };
                RData::TXT(TXT::from_bytes(chunks))
            }
            Rr::Ptr(host) => RData::PTR(PTR(fqdn(host))),
            Rr::Cname(host) => RData::CNAME(CNAME(fqdn(host))),
            Rr::Tlsa(u, sel, m, data) => RData::TLSA(TLSA::new(
                (*u).into(),
                (*sel).into(),
                (*m).into(),
                data.clone(),
            )),
        }
    }
}

/// The canonical key of a name: lower case, no trailing dot ("" for the root).
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A fully qualified hickory Name ("" or "." is the root).
fn fqdn(name: &str) -> Name {
    let k = name.trim_end_matches('.');
    if k.is_empty() {
        return Name::root();
    }
    Name::from_ascii(format!("{k}.")).unwrap_or_else(|e| panic!("dns: bad name {name:?}: {e}"))
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// Zone data: any names, any of the supported record types. Builder style:
/// `Zone::new().mx("example.test", 10, "mx.example.test").a("mx.example.test", ip)`.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    records: BTreeMap<String, Vec<Rr>>,
    /// Names whose answers carry the AD bit (as a validating resolver's would).
    secure: std::collections::BTreeSet<String>,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    fn add(mut self, name: &str, rr: Rr) -> Zone {
        self.records.entry(key(name)).or_default().push(rr);
        self
    }

    /// An MX record `domain MX pref host`.
    pub fn mx(self, domain: &str, pref: u16, host: &str) -> Zone {
        self.add(domain, Rr::Mx(pref, host.to_string()))
    }

    /// A null MX (RFC 7505): `domain MX 0 .`.
    pub fn null_mx(self, domain: &str) -> Zone {
        self.add(domain, Rr::Mx(0, String::new()))
    }

    pub fn a(self, name: &str, ip: Ipv4Addr) -> Zone {
        self.add(name, Rr::A(ip))
    }

    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Zone {
        self.add(name, Rr::Aaaa(ip))
    }

    /// A TXT record; a text longer than 255 bytes is split into 255-byte strings.
    pub fn txt(self, name: &str, text: &str) -> Zone {
        self.add(name, Rr::Txt(text.to_string()))
    }

    /// A PTR record for `ip` (at its in-addr.arpa / ip6.arpa name) pointing to `name`.
    pub fn ptr(self, ip: IpAddr, name: &str) -> Zone {
        self.add(&reverse_name(ip), Rr::Ptr(name.to_string()))
    }

    /// A TLSA record (usage, selector, matching type, association data), e.g.
    /// at `_25._tcp.mx.example.test`.
    pub fn tlsa(self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Zone {
        self.add(name, Rr::Tlsa(usage, selector, matching, data.to_vec()))
    }

    /// Answers to questions for `name` carry the AD bit ("authenticated
    /// data"), as a validating resolver sets it for a DNSSEC-signed zone.
    pub fn authenticated(mut self, name: &str) -> Zone {
        self.secure.insert(key(name));
        self
    }

    /// A CNAME `name -> target` (followed inside the zone when answering).
    pub fn cname(self, name: &str, target: &str) -> Zone {
        self.add(name, Rr::Cname(target.to_string()))
    }

    /// The name exists: it has records, or a name below it has (an empty non-terminal).
    fn exists(&self, k: &str) -> bool {
        if self.records.contains_key(k) {
            return true;
        }
        let suffix = format!(".{k}");
        k.is_empty() || self.records.keys().any(|n| n.ends_with(&suffix))
    }

    /// Build the answer to one request.
    fn answer(&self, req: &Message) -> Message {
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.checking_disabled = req.metadata.checking_disabled;
        resp.metadata.authoritative = true;
        if let Some(e) = &req.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().clamp(512, 1232));
            resp.set_edns(edns);
        }
        if req.metadata.message_type != MessageType::Query || req.metadata.op_code != OpCode::Query
        {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp;
        }
        let [q] = &req.queries[..] else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return resp;
        };
        resp.add_query(q.clone());
        if q.query_class() != DNSClass::IN {
            resp.metadata.response_code = ResponseCode::Refused;
            return resp;
        }
        let qtype = q.query_type();
        let mut name = q.name().clone();
        let mut k = key(&name.to_ascii());
        resp.metadata.authentic_data = self.secure.contains(&k);
        // Follow CNAMEs inside the zone (bounded).
        for _ in 0..8 {
            let rrs = self.records.get(&k).cloned().unwrap_or_default();
            let matching: Vec<&Rr> = rrs
                .iter()
                .filter(|r| qtype == RecordType::ANY || r.rtype() == qtype)
                .collect();
            if !matching.is_empty() {
                for r in matching {
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, r.rdata()));
                }
                return resp;
            }
            if let Some(Rr::Cname(target)) = rrs.iter().find(|r| matches!(r, Rr::Cname(_))) {
                let rr = Rr::Cname(target.clone());
                resp.add_answer(Record::from_rdata(name.clone(), TTL, rr.rdata()));
                name = fqdn(target);
                k = key(target);
                continue;
            }
            if !self.exists(&k) {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            break;
        }
        resp.add_authority(soa_for(&k));
        resp
    }
}

/// An SOA for negative answers, owned by the name's top-level label.
fn soa_for(k: &str) -> Record {
    let apex = k.rsplit('.').next().unwrap_or("");
    let owner = fqdn(apex);
    let soa = SOA::new(
        fqdn("ns.test"),
        fqdn("hostmaster.test"),
        1,
        3600,
        600,
        86400,
        0,
    );
    Record::from_rdata(owner, 0, RData::SOA(soa))
}

struct Shared {
    zone: Mutex<Zone>,
    queries: Mutex<Vec<(String, String)>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Decode a request, record its question, encode the answer (None: ignore it).
    fn handle(&self, bytes: &[u8], max_len: Option<usize>) -> Option<Vec<u8>> {
        let req = Message::from_vec(bytes).ok()?;
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        for q in &req.queries {
            lock(&self.queries).push((key(&q.name().to_ascii()), q.query_type().to_string()));
        }
        let resp = lock(&self.zone).answer(&req);
        let out = resp.to_vec().ok()?;
        match max_len {
            Some(max) if out.len() > max.max(req.max_payload() as usize) => {
                resp.truncate().to_vec().ok()
            }
            _ => Some(out),
        }
    }
}

/// A running DNS server on 127.0.0.1 (UDP and TCP on the same port). Stops when dropped.
pub struct DnsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Serve `zone` on a free port of 127.0.0.1, UDP and TCP.
    pub fn start(zone: Zone) -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("dns: local_addr");
        let shared = Arc::new(Shared {
            zone: Mutex::new(zone),
            queries: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let t1 = thread::Builder::new()
            .name(format!("dns-udp-{addr}"))
            .spawn(move || udp_loop(udp, sh))
            .expect("dns: spawn");
        let sh = shared.clone();
        let t2 = thread::Builder::new()
            .name(format!("dns-tcp-{addr}"))
            .spawn(move || tcp_loop(tcp, sh))
            .expect("dns: spawn");
        DnsServer {
            shared,
            addr,
            threads: vec![t1, t2],
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every question asked so far: (name in lower case without the trailing
    /// dot, type such as "MX", "A", "AAAA", "TXT", "PTR").
    pub fn queries(&self) -> Vec<(String, String)> {
        lock(&self.shared.queries).clone()
    }

    /// Replace the zone data while running.
    pub fn set_zone(&self, zone: Zone) {
        *lock(&self.shared.zone) = zone;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake both loops.
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(&[], self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("dns: cannot bind UDP");
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("dns: no port free for both UDP and TCP");
}

fn udp_loop(sock: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(out) = shared.handle(&buf[..n], Some(512)) {
            let _ = sock.send_to(&out, from);
        }
    }
}

fn tcp_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let sh = shared.clone();
        let _ = thread::Builder::new()
            .name("dns-tcp-conn".into())
            .spawn(move || tcp_conn(stream, sh));
    }
}

fn tcp_conn(mut s: TcpStream, shared: Arc<Shared>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut msg).is_err() {
            return;
        }
        let Some(out) = shared.handle(&msg, None) else {
            return;
        };
        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        if s.write_all(&framed).is_err() {
            return;
        }
    }
}
