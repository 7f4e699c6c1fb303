//! A real, scriptable SMTP receiver ("sink") on a loopback port, for tests.
//!
//! It owns the server side of the SMTP dialogue that vsendmail talks to: a
//! `std::net` listener with one blocking thread per connection, which records
//! every byte, every command line and every accepted message, and which can be
//! told (by [`Rule`]s) to answer a step with another reply, to wait, to drop the
//! connection or to hang. It speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
//! VRFY and QUIT, several transactions per connection, and pipelined input.
//! With [`SinkConfig::tls`] it offers STARTTLS (or speaks implicit TLS with
//! [`SinkConfig::implicit_tls`]) with a rustls server; with
//! [`SinkConfig::auth`] it offers AUTH PLAIN/LOGIN and records each attempt
//! ([`Conn::auth`]). [`server_tls`] builds the rustls server side from a
//! certificate chain and key (tests make them with rcgen).
//!
//! Everything it records is kept before the reply that makes it visible to the
//! client is written, so once the client has seen `250` for the final dot the
//! message is already in [`Sink::messages`].

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How a sink is set up. Build it with `SinkConfig { field: .., ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Port to listen on; 0 (the default) picks a free one. See [`Sink::start_many`]
    /// for several sinks on one port (MX tests: `mx_port` is global).
    pub port: u16,
    /// EHLO keywords offered, in order (default PIPELINING, 8BITMIME, SMTPUTF8,
    /// SIZE 52428800, DSN, ENHANCEDSTATUSCODES).
    pub extensions: Vec<String>,
    /// Reply `502` to EHLO, so that the client must fall back to HELO.
    pub ehlo_refused: bool,
    /// Scripted behaviour; see [`Rule`]. The first rule that matches a step wins.
    pub rules: Vec<Rule>,
    /// Host name in the greeting and the EHLO reply (default `sink.test`).
    pub hostname: String,
    /// Offer STARTTLS with this server configuration (see [`server_tls`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With `tls`: TLS from the first byte (smtps, port 465 style), no STARTTLS.
    pub implicit_tls: bool,
    /// Offer STARTTLS, answer it with 220, then send bytes that are not TLS
    /// and close: a broken handshake.
    pub starttls_broken: bool,
    /// Accepted (user, password) pairs; when not empty, AUTH is offered.
    pub auth: Vec<(String, String)>,
    /// The AUTH mechanisms offered (default PLAIN, LOGIN).
    pub auth_mechs: Vec<String>,
    /// With `XOAUTH2`/`OAUTHBEARER` in `auth_mechs`: the one access token
    /// accepted now (shared with `support::oauth::TokenServer`, which issues it).
    pub oauth_token: Option<Arc<Mutex<String>>>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            extensions: [
                "PIPELINING",
                "8BITMIME",
                "SMTPUTF8",
                "SIZE 52428800",
                "DSN",
                "ENHANCEDSTATUSCODES",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ehlo_refused: false,
            rules: Vec::new(),
            hostname: "sink.test".to_string(),
            tls: None,
            implicit_tls: false,
            starttls_broken: false,
            auth: Vec::new(),
            auth_mechs: vec!["PLAIN".to_string(), "LOGIN".to_string()],
            oauth_token: None,
        }
    }
}

/// A point in the dialogue where a [`Rule`] can act.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Right after accept(), before the greeting.
    Connect,
    Ehlo,
    Helo,
    Mail,
    /// A RCPT whose address contains this substring; `""` matches every RCPT.
    Rcpt(String),
    /// The DATA command (its reply is normally 354).
    Data,
    /// After the message body's final dot (its reply is normally 250).
    Dot,
    Rset,
    Quit,
    /// The STARTTLS command (offered with [`SinkConfig::tls`]; otherwise
    /// answered with 454). A `Reply` rule replaces the 220; only a 220 starts TLS.
    StartTls,
    /// The end of an AUTH exchange (offered with [`SinkConfig::auth`];
    /// otherwise answered with 503): a `Reply` rule replaces the 235/535.
    Auth,
}

/// What a [`Rule`] does at its step.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send this reply instead of the normal one, e.g. `"451 4.3.0 try later"`.
    /// Multi-line replies are separated by `\r\n` (or `\n`); the sink sets the
    /// `-`/space continuation marks itself. A 2xx reply to
    /// MAIL/RCPT/Dot counts as acceptance, a 354 to DATA starts the body.
    Reply(String),
    /// Wait this long, then continue normally.
    Delay(Duration),
    /// Close the connection without a reply.
    Drop,
    /// Never answer; keep the socket open (reading and discarding) until the
    /// client goes away or the sink stops.
    Hang,
    /// Send this reply, then stop reading (the client's writes fill the
    /// socket buffers and block) until the client goes away or the sink stops.
    /// At [`Step::Data`] with a 354 reply: a receiver that stalls mid-body.
    ReplyThenStall(String),
}

/// One scripted behaviour: at `step`, do `action`, always (`times: None`) or
/// only the first `n` times (`times: Some(n)`, counted over all connections).
#[derive(Clone, Debug)]
pub struct Rule {
    pub step: Step,
    pub action: Action,
    pub times: Option<usize>,
}

impl Rule {
    /// A rule that always applies.
    pub fn new(step: Step, action: Action) -> Rule {
        Rule {
            step,
            action,
            times: None,
        }
    }
    /// Shorthand for `Rule::new(step, Action::Reply(reply.into()))`.
    pub fn reply(step: Step, reply: &str) -> Rule {
        Rule::new(step, Action::Reply(reply.to_string()))
    }
    /// Limit the rule to its first `n` uses.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }
}

/// What the sink saw on one connection (finished or still open).
#[derive(Clone, Debug)]
pub struct Conn {
    /// The client's address and port, as the sink's accept() saw it.
    pub peer: SocketAddr,
    /// The sink's own address on this connection.
    pub local: SocketAddr,
    /// `"EHLO"` or `"HELO"`: the last greeting command the client sent ("" if none).
    pub helo_cmd: String,
    /// Its argument.
    pub helo: String,
    /// Every command line, in order, CRLF stripped (message bodies excluded).
    pub commands: Vec<String>,
    /// The raw bytes of each read() call, to show pipelining.
    pub reads: Vec<Vec<u8>>,
    /// All bytes received.
    pub raw: Vec<u8>,
    /// The connection has ended (either side closed it).
    pub closed: bool,
    /// A TLS handshake (STARTTLS or implicit) completed on this connection.
    pub tls: bool,
    /// Every AUTH exchange, in order.
    pub auth: Vec<AuthAttempt>,
    /// The client presented a certificate (verified by [`server_tls_client_auth`]).
    pub client_cert: bool,
}

/// One AUTH exchange as the sink decoded it.
#[derive(Clone, Debug)]
pub struct AuthAttempt {
    /// `PLAIN`, `LOGIN` or `EXTERNAL` (accepted when the client presented a
    /// certificate).
    pub mech: String,
    pub user: String,
    pub password: String,
    /// Whether the pair was in [`SinkConfig::auth`] (235) or not (535).
    pub ok: bool,
    /// Whether the exchange ran over TLS.
    pub tls: bool,
}

/// One message that the sink accepted (2xx after the final dot).
#[derive(Clone, Debug)]
pub struct Msg {
    /// Index of the connection in [`Sink::connections`].
    pub conn: usize,
    pub peer: SocketAddr,
    /// The EHLO/HELO argument of the connection.
    pub helo: String,
    /// The address inside `<>` of MAIL FROM (`""` for the null sender).
    pub mail_from: String,
    /// What follows the `>`, trimmed, e.g. `"SIZE=123 BODY=8BITMIME"`.
    pub mail_params: String,
    /// Accepted recipients (inside `<>`), in order.
    pub rcpts: Vec<String>,
    /// The parameters of each accepted RCPT (same order as `rcpts`).
    pub rcpt_params: Vec<String>,
    /// Exact bytes after the DATA command line up to and including the CRLF
    /// that ends the last line, i.e. without the terminating `.` CRLF; still
    /// dot-stuffed. (Empty for an empty message.)
    pub raw_data: Vec<u8>,
    /// `raw_data` with dot-stuffing removed.
    pub data: Vec<u8>,
}

impl Msg {
    /// The header section (everything before the first empty line).
    fn header_block(&self) -> &[u8] {
        let d = &self.data[..];
        if d.starts_with(b"\r\n") || d.starts_with(b"\n") {
            return &[];
        }
        if let Some(p) = find(d, b"\r\n\r\n") {
            return &d[..p + 2];
        }
        if let Some(p) = find(d, b"\n\n") {
            return &d[..p + 1];
        }
        d
    }

    /// All header fields as (name, unfolded value) pairs, in order.
    pub fn header_fields(&self) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(self.header_block()).into_owned();
        let mut out: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(line);
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                out.push((name.trim().to_string(), value.to_string()));
            }
        }
        for f in &mut out {
            f.1 = f.1.trim().to_string();
        }
        out
    }

    /// The first header field of this name (case-insensitive), unfolded
    /// (CRLF removed, continuation white space kept) and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Every header field of this name, in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.header_fields()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// The body: what follows the first empty line (after un-dot-stuffing).
    pub fn body(&self) -> &[u8] {
        let h = self.header_block().len();
        let rest = &self.data[h..];
        if let Some(r) = rest.strip_prefix(b"\r\n") {
            r
        } else if let Some(r) = rest.strip_prefix(b"\n") {
            r
        } else {
            rest
        }
    }

    /// The whole message (un-dot-stuffed) as text, lossy.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Remove SMTP dot-stuffing: a line starting with `.` loses that dot.
pub fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at_line_start = true;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if at_line_start && b == b'.' {
            at_line_start = false;
            i += 1;
            continue;
        }
        out.push(b);
        at_line_start = b == b'\n' && i > 0 && raw[i - 1] == b'\r';
        i += 1;
    }
    out
}

struct State {
    conns: Vec<Conn>,
    msgs: Vec<Msg>,
    /// Each rule with how often it has been used.
    rules: Vec<(Rule, usize)>,
    /// A clone of each connection's stream (by index) while it is open: shut
    /// down when the connection ends (so the peer sees the close even though
    /// this clone shares the socket) or when the sink stops.
    streams: Vec<Option<TcpStream>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    cfg: SinkConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The action of the first matching rule that is still active (and count its use).
    fn action(&self, step: &Step, rcpt: Option<&str>) -> Option<Action> {
        let mut st = self.lock();
        for (rule, used) in st.rules.iter_mut() {
            let matches = match (&rule.step, step) {
                (Step::Rcpt(sub), Step::Rcpt(_)) => rcpt.unwrap_or("").contains(sub.as_str()),
                (a, b) => a == b,
            };
            if !matches || rule.times.is_some_and(|n| *used >= n) {
                continue;
            }
            *used += 1;
            return Some(rule.action.clone());
        }
        None
    }

    fn with_conn(&self, idx: usize, f: impl FnOnce(&mut Conn)) {
        let mut st = self.lock();
        f(&mut st.conns[idx]);
        drop(st);
        self.changed.notify_all();
    }

    /// Sleep `d`, returning early when the sink stops.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// A running SMTP receiver. Stops (closing every connection) when dropped.
pub struct Sink {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Sink {
    /// Start a sink listening on `cfg.bind:cfg.port` (port 0: a free one).
    pub fn start(cfg: SinkConfig) -> Sink {
        let listener = TcpListener::bind((cfg.bind, cfg.port))
            .unwrap_or_else(|e| panic!("sink: cannot listen on {}:{}: {e}", cfg.bind, cfg.port));
        Sink::from_listener(listener, cfg)
    }

    /// Start a sink with the default configuration on 127.0.0.1.
    pub fn start_default() -> Sink {
        Sink::start(SinkConfig::default())
    }

    /// Start several sinks that all listen on the same (free) port, each on its
    /// own `cfg.bind` address (which must differ), e.g. 127.0.0.11 and
    /// 127.0.0.12 as two MX hosts reached through one `mx_port`.
    pub fn start_many(cfgs: Vec<SinkConfig>) -> Vec<Sink> {
        assert!(!cfgs.is_empty(), "start_many needs at least one config");
        for _attempt in 0..50 {
            let first = TcpListener::bind((cfgs[0].bind, 0)).expect("sink: cannot listen");
            let port = first.local_addr().unwrap().port();
            let mut listeners = vec![first];
            for cfg in &cfgs[1..] {
                match TcpListener::bind((cfg.bind, port)) {
                    Ok(l) => listeners.push(l),
                    Err(_) => break,
                }
            }
            if listeners.len() == cfgs.len() {
                return listeners
                    .into_iter()
                    .zip(cfgs)
                    .map(|(l, c)| Sink::from_listener(l, c))
                    .collect();
            }
        }
        panic!("sink: found no port free on all of the addresses");
    }

    fn from_listener(listener: TcpListener, cfg: SinkConfig) -> Sink {
        let addr = listener.local_addr().expect("sink: local_addr");
        let rules = cfg.rules.iter().cloned().map(|r| (r, 0)).collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                conns: Vec::new(),
                msgs: Vec::new(),
                rules,
                streams: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            cfg,
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("sink-accept-{addr}"))
            .spawn(move || accept_loop(listener, sh))
            .expect("sink: spawn");
        Sink {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replace the rules (use counts start again from zero).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.lock().rules = rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// Every connection so far, finished or not, in accept order.
    pub fn connections(&self) -> Vec<Conn> {
        self.shared.lock().conns.clone()
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Msg> {
        self.shared.lock().msgs.clone()
    }

    /// Wait until at least `n` messages have been accepted and return them all;
    /// panic with what the sink saw if that does not happen within `timeout`.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Msg> {
        self.wait_for(timeout, |st| st.msgs.len() >= n)
            .unwrap_or_else(|| {
                panic!(
                    "sink {}: waited {timeout:?} for {n} message(s), got {}\n{}",
                    self.addr,
                    self.messages().len(),
                    self.dump()
                )
            });
        self.messages()
    }

    /// Wait until at least `n` connections have been accepted and all of them
    /// are closed; return them. Panics on timeout.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> Vec<Conn> {
        self.wait_for(timeout, |st| {
            st.conns.len() >= n && st.conns.iter().all(|c| c.closed)
        })
        .unwrap_or_else(|| {
            panic!(
                "sink {}: waited {timeout:?} for {n} closed connection(s)\n{}",
                self.addr,
                self.dump()
            )
        });
        self.connections()
    }

    fn wait_for(&self, timeout: Duration, cond: impl Fn(&State) -> bool) -> Option<()> {
        let end = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if cond(&st) {
                return Some(());
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A readable account of every connection's commands, for failure messages.
    pub fn dump(&self) -> String {
        let st = self.shared.lock();
        let mut s = String::new();
        for (i, c) in st.conns.iter().enumerate() {
            s.push_str(&format!(
                "  connection {i} from {}{}:\n",
                c.peer,
                if c.closed { " (closed)" } else { " (open)" }
            ));
            for cmd in &c.commands {
                s.push_str(&format!("    C: {cmd}\n"));
            }
        }
        if st.conns.is_empty() {
            s.push_str("  (no connections)\n");
        }
        s
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sink({})", self.addr)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in self.shared.lock().streams.iter_mut() {
            if let Some(s) = s.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let idx = {
            let mut st = shared.lock();
            st.conns.push(Conn {
                peer,
                local,
                helo_cmd: String::new(),
                helo: String::new(),
                commands: Vec::new(),
                reads: Vec::new(),
                raw: Vec::new(),
                closed: false,
                tls: false,
                auth: Vec::new(),
                client_cert: false,
            });
            st.streams.push(stream.try_clone().ok());
            st.conns.len() - 1
        };
        shared.changed.notify_all();
        let sh = shared.clone();
        let _ = thread::Builder::new()
            .name(format!("sink-conn-{idx}"))
            .spawn(move || {
                let mut io = Io {
                    tcp: stream.try_clone().ok(),
                    stream: Box::new(stream),
                    buf: Vec::new(),
                    shared: sh.clone(),
                    idx,
                };
                serve(&mut io, peer);
                drop(io);
                if let Some(s) = sh.lock().streams[idx].take() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                sh.with_conn(idx, |c| c.closed = true);
            });
    }
}

/// The byte stream of one connection, recording what it reads. After a TLS
/// handshake `stream` is the rustls stream over (a clone of) `tcp`.
struct Io {
    /// The socket itself, to wrap in TLS and to watch while stalled.
    tcp: Option<TcpStream>,
    stream: Box<dyn ReadWrite>,
    buf: Vec<u8>,
    shared: Arc<Shared>,
    idx: usize,
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// What happened when handling a step's rules.
enum Flow {
    /// Use this reply (the rule's or the normal one).
    Reply(String),
    /// The connection is over.
    End,
}

impl Io {
    /// Read once more into the buffer; false on EOF or error.
    fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                chunk.truncate(n);
                self.buf.extend_from_slice(&chunk);
                self.shared.with_conn(self.idx, |c| {
                    c.raw.extend_from_slice(&chunk);
                    c.reads.push(chunk);
                });
                true
            }
        }
    }

    /// The next command line (CRLF or LF stripped), or None at EOF.
    fn line(&mut self) -> Option<String> {
        let mut scan = 0;
        loop {
            if let Some(p) = self.buf[scan..].iter().position(|&b| b == b'\n') {
                let end = scan + p;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            scan = self.buf.len();
            if !self.fill() {
                return None;
            }
        }
    }

    /// The message body up to the terminating `.` line: returns the bytes up to
    /// and including the last line's CRLF, or None at EOF.
    fn data(&mut self) -> Option<Vec<u8>> {
        // A virtual CRLF in front makes an empty message (".\r\n") a plain match.
        let mut d = b"\r\n".to_vec();
        d.append(&mut self.buf);
        let mut scan = 0;
        loop {
            if let Some(p) = find(&d[scan..], b"\r\n.\r\n") {
                let end = scan + p;
                self.buf = d.split_off(end + 5);
                d.truncate(end + 2);
                if d.len() == 2 {
                    return Some(Vec::new());
                }
                return Some(d.split_off(2));
            }
            scan = d.len().saturating_sub(4);
            if !self.fill() {
                return None;
            }
            d.append(&mut self.buf);
        }
    }

    /// Send a reply. Lines may be separated by `\r\n` or `\n`; lines that
    /// start with a code get the right continuation marks (`250-`/`250 `).
    fn send(&mut self, reply: &str) -> bool {
        let lines: Vec<&str> = reply
            .trim_end_matches(['\r', '\n'])
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .collect();
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let b = line.as_bytes();
            if b.len() >= 4
                && b[..3].iter().all(u8::is_ascii_digit)
                && (b[3] == b' ' || b[3] == b'-')
            {
                out.push_str(&line[..3]);
                out.push(if i + 1 == lines.len() { ' ' } else { '-' });
                out.push_str(&line[4..]);
            } else {
                out.push_str(line);
            }
            out.push_str("\r\n");
        }
        self.stream.write_all(out.as_bytes()).is_ok() && self.stream.flush().is_ok()
    }

    /// Keep reading (and recording) until the client or the sink ends it.
    fn hang(&mut self) {
        // fill() blocks until data arrives or the socket is shut down.
        loop {
            if self.shared.stop.load(Ordering::SeqCst) || !self.fill() {
                break;
            }
        }
    }

    /// Apply the rules of `step`: the reply to send, or the end of the connection.
    fn step(&mut self, step: Step, rcpt: Option<&str>, normal: String) -> Flow {
        match self.shared.action(&step, rcpt) {
            None => Flow::Reply(normal),
            Some(Action::Reply(r)) => Flow::Reply(r),
            Some(Action::Delay(d)) => {
                self.shared.sleep(d);
                Flow::Reply(normal)
            }
            Some(Action::Drop) => Flow::End,
            Some(Action::Hang) => {
                self.hang();
                Flow::End
            }
            Some(Action::ReplyThenStall(r)) => {
                if self.send(&r) {
                    self.stall();
                }
                Flow::End
            }
        }
    }

    /// Read nothing more; wait until the client closes or the sink stops.
    fn stall(&mut self) {
        let Some(tcp) = &self.tcp else { return };
        while !self.shared.stop.load(Ordering::SeqCst) {
            let mut pfd = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(tcp),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd on a socket this Io owns.
            let r = unsafe { libc::poll(&mut pfd, 1, 50) };
            if r > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
                return;
            }
        }
    }

    /// Write bytes as they are (no reply formatting).
    fn send_raw(&mut self, b: &[u8]) -> bool {
        self.stream.write_all(b).is_ok() && self.stream.flush().is_ok()
    }

    /// Server side of a TLS handshake on this connection; then every read and
    /// write goes through TLS. False when it failed (the connection is over).
    fn start_tls(&mut self) -> bool {
        let Some(cfg) = self.shared.cfg.tls.clone() else {
            return false;
        };
        let Some(mut sock) = self.tcp.as_ref().and_then(|t| t.try_clone().ok()) else {
            return false;
        };
        let Ok(mut conn) = rustls::ServerConnection::new(cfg) else {
            return false;
        };
        // Anything the client sent before the handshake is discarded (RFC 3207).
        self.buf.clear();
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                return false;
            }
        }
        let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
        self.stream = Box::new(rustls::StreamOwned::new(conn, sock));
        self.shared.with_conn(self.idx, |c| {
            c.tls = true;
            c.client_cert = client_cert;
        });
        true
    }

    /// The server side of AUTH (PLAIN or LOGIN, with or without an initial
    /// response): the decoded (mechanism, user, password), or an error reply.
    /// None when the connection ended.
    fn auth_exchange(&mut self, arg: &str) -> Option<Result<(String, String, String), String>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |t: &str| {
            b64.decode(t.trim())
                .ok()
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let mut words = arg.split_whitespace();
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        if !self
            .shared
            .cfg
            .auth_mechs
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&mech))
        {
            return Some(Err("504 5.5.4 Unrecognized authentication type".into()));
        }
        let cancelled = || Err("501 5.7.0 Authentication cancelled or malformed".to_string());
        match mech.as_str() {
            "PLAIN" => {
                let token = match initial {
                    Some(t) => t,
                    None => {
                        if !self.send("334 ") {
                            return None;
                        }
                        self.line()?
                    }
                };
                let Some(text) = decode(&token) else {
                    return Some(cancelled());
                };
                let parts: Vec<&str> = text.split('\0').collect();
                if parts.len() != 3 {
                    return Some(cancelled());
                }
                Some(Ok((mech, parts[1].to_string(), parts[2].to_string())))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(t) => t,
                    None => {
                        if !self.send("334 VXNlcm5hbWU6") {
                            return None;
                        }
                        self.line()?
                    }
                };
                if !self.send("334 UGFzc3dvcmQ6") {
                    return None;
                }
                let pass = self.line()?;
                match (decode(&user), decode(&pass)) {
                    (Some(u), Some(p)) => Some(Ok((mech, u, p))),
                    _ => Some(cancelled()),
                }
            }
            // The credential is the TLS client certificate; the argument is
            // the authorization identity (`=`: none).
            "EXTERNAL" => Some(Ok((mech, String::new(), String::new()))),
            // The user and the bearer token (RFC 7628; Google's XOAUTH2).
            "XOAUTH2" | "OAUTHBEARER" => {
                let Some(text) = initial.as_deref().and_then(decode) else {
                    return Some(cancelled());
                };
                let mut user = String::new();
                let mut token = String::new();
                for part in text.split('\x01') {
                    if let Some(u) = part.strip_prefix("user=") {
                        user = u.to_string();
                    } else if let Some(t) = part.strip_prefix("auth=Bearer ") {
                        token = t.to_string();
                    } else if let Some(gs2) = part.strip_prefix("n,a=") {
                        user = gs2.trim_end_matches(',').to_string();
                    }
                }
                Some(Ok((mech, user, token)))
            }
            _ => Some(Err("504 5.5.4 Unrecognized authentication type".into())),
        }
    }
}

/// A rustls server configuration (ring) for a sink's [`SinkConfig::tls`].
pub fn server_tls(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("sink: TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("sink: certificate and key");
    Arc::new(cfg)
}

/// As [`server_tls`], and the client must present a certificate issued by
/// `client_ca` (DER): a relay that authenticates senders by certificate.
pub fn server_tls_client_auth(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    client_ca: rustls::pki_types::CertificateDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca).expect("sink: client CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("sink: client verifier");
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("sink: TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("sink: certificate and key");
    Arc::new(cfg)
}

/// An SMTP transaction in progress.
struct Txn {
    from: String,
    params: String,
    rcpts: Vec<String>,
    rcpt_params: Vec<String>,
}

/// Split `<addr> params` into the address (quotes respected) and the params.
fn parse_path(arg: &str) -> (String, String) {
    let arg = arg.trim_start();
    if let Some(rest) = arg.strip_prefix('<') {
        let mut in_quote = false;
        let mut escaped = false;
        for (i, ch) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match ch {
                '\\' if in_quote => escaped = true,
                '"' => in_quote = !in_quote,
                '>' if !in_quote => {
                    return (rest[..i].to_string(), rest[i + 1..].trim().to_string());
                }
                _ => {}
            }
        }
        (rest.to_string(), String::new())
    } else {
        match arg.split_once(' ') {
            Some((a, p)) => (a.to_string(), p.trim().to_string()),
            None => (arg.to_string(), String::new()),
        }
    }
}

/// The argument after a `FROM:`/`TO:` keyword (case-insensitive), if present.
fn after_keyword<'a>(arg: &'a str, kw: &str) -> Option<&'a str> {
    if arg.len() >= kw.len() && arg[..kw.len()].eq_ignore_ascii_case(kw) {
        Some(&arg[kw.len()..])
    } else {
        None
    }
}

fn serve(io: &mut Io, peer: SocketAddr) {
    let shared = io.shared.clone();
    let cfg = &shared.cfg;
    let host = cfg.hostname.clone();
    let mut tls_on = false;
    if cfg.implicit_tls && cfg.tls.is_some() {
        if !io.start_tls() {
            return;
        }
        tls_on = true;
    }

    let greeting = match io.step(
        Step::Connect,
        None,
        format!("220 {host} ESMTP vsendmail test sink"),
    ) {
        Flow::End => return,
        Flow::Reply(r) => r,
    };
    // RFC 5321 3.1: after a refused greeting, only QUIT is served.
    let refused = !greeting.starts_with('2');
    if !io.send(&greeting) {
        return;
    }

    let mut helo = String::new();
    let mut greeted = false;
    let mut txn: Option<Txn> = None;
    let mut queued = 0usize;

    while let Some(line) = io.line() {
        let l = line.clone();
        shared.with_conn(io.idx, |c| c.commands.push(l));
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        if refused && verb != "QUIT" {
            if !io.send("503 5.5.1 Bad sequence of commands: service refused") {
                return;
            }
            continue;
        }
        let flow = match verb.as_str() {
            "EHLO" | "HELO" => {
                let a = arg.trim().to_string();
                let v = verb.clone();
                shared.with_conn(io.idx, |c| {
                    c.helo_cmd = v;
                    c.helo = a.clone();
                });
                txn = None;
                let flow = if verb == "EHLO" {
                    let normal = if cfg.ehlo_refused {
                        "502 5.5.2 EHLO not supported".to_string()
                    } else {
                        let mut lines = vec![format!("{host} Hello {a}")];
                        lines.extend(cfg.extensions.iter().cloned());
                        if (cfg.tls.is_some() || cfg.starttls_broken) && !tls_on {
                            lines.push("STARTTLS".to_string());
                        }
                        if !cfg.auth.is_empty() {
                            lines.push(format!("AUTH {}", cfg.auth_mechs.join(" ")));
                        }
                        let n = lines.len();
                        lines
                            .iter()
                            .enumerate()
                            .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
                            .collect::<Vec<_>>()
                            .join("\r\n")
                    };
                    io.step(Step::Ehlo, None, normal)
                } else {
                    io.step(Step::Helo, None, format!("250 {host}"))
                };
                if let Flow::Reply(r) = &flow
                    && r.starts_with('2')
                {
                    greeted = true;
                    helo = a;
                }
                flow
            }
            "MAIL" => {
                if !greeted {
                    Flow::Reply("503 5.5.1 Error: send HELO/EHLO first".into())
                } else if txn.is_some() {
                    Flow::Reply("503 5.5.1 Error: nested MAIL command".into())
                } else if let Some(rest) = after_keyword(&arg, "FROM:") {
                    let (from, params) = parse_path(rest);
                    let flow = io.step(Step::Mail, None, "250 2.1.0 Ok".into());
                    if let Flow::Reply(r) = &flow
                        && r.starts_with('2')
                    {
                        txn = Some(Txn {
                            from,
                            params,
                            rcpts: Vec::new(),
                            rcpt_params: Vec::new(),
                        });
                    }
                    flow
                } else {
                    Flow::Reply("501 5.5.4 Syntax: MAIL FROM:<address>".into())
                }
            }
            "RCPT" => {
                if txn.is_none() {
                    Flow::Reply("503 5.5.1 Error: need MAIL command".into())
                } else if let Some(rest) = after_keyword(&arg, "TO:") {
                    let (to, params) = parse_path(rest);
                    let flow = io.step(Step::Rcpt(to.clone()), Some(&to), "250 2.1.5 Ok".into());
                    if let (Flow::Reply(r), Some(t)) = (&flow, txn.as_mut())
                        && r.starts_with('2')
                    {
                        t.rcpts.push(to);
                        t.rcpt_params.push(params);
                    }
                    flow
                } else {
                    Flow::Reply("501 5.5.4 Syntax: RCPT TO:<address>".into())
                }
            }
            "DATA" => match txn.take() {
                None => Flow::Reply("503 5.5.1 Error: need MAIL command".into()),
                Some(t) if t.rcpts.is_empty() => {
                    txn = Some(t);
                    Flow::Reply("554 5.5.1 Error: no valid recipients".into())
                }
                Some(t) => {
                    let r = match io.step(
                        Step::Data,
                        None,
                        "354 End data with <CR><LF>.<CR><LF>".into(),
                    ) {
                        Flow::End => return,
                        Flow::Reply(r) => r,
                    };
                    if !r.starts_with("354") {
                        txn = Some(t);
                        Flow::Reply(r)
                    } else {
                        if !io.send(&r) {
                            return;
                        }
                        let Some(raw_data) = io.data() else { return };
                        queued += 1;
                        let normal = format!("250 2.0.0 Ok: queued as SINK{}C{queued}", io.idx);
                        let flow = io.step(Step::Dot, None, normal);
                        if let Flow::Reply(r) = &flow
                            && r.starts_with('2')
                        {
                            let data = unstuff(&raw_data);
                            let msg = Msg {
                                conn: io.idx,
                                peer,
                                helo: helo.clone(),
                                mail_from: t.from,
                                mail_params: t.params,
                                rcpts: t.rcpts,
                                rcpt_params: t.rcpt_params,
                                raw_data,
                                data,
                            };
                            shared.lock().msgs.push(msg);
                            shared.changed.notify_all();
                        }
                        flow
                    }
                }
            },
            "RSET" => {
                txn = None;
                io.step(Step::Rset, None, "250 2.0.0 Ok".into())
            }
            "NOOP" => Flow::Reply("250 2.0.0 Ok".into()),
            "VRFY" => Flow::Reply("252 2.0.0 Cannot VRFY user".into()),
            "QUIT" => {
                if let Flow::Reply(r) = io.step(Step::Quit, None, "221 2.0.0 Bye".into()) {
                    io.send(&r);
                }
                return;
            }
            "STARTTLS" if (cfg.tls.is_some() || cfg.starttls_broken) && !tls_on => {
                match io.step(Step::StartTls, None, "220 2.0.0 Ready to start TLS".into()) {
                    Flow::End => return,
                    Flow::Reply(r) => {
                        if !io.send(&r) {
                            return;
                        }
                        if !r.starts_with("220") {
                            continue;
                        }
                        if cfg.starttls_broken {
                            io.send_raw(b"this is not a TLS record\r\n");
                            return;
                        }
                        if !io.start_tls() {
                            return;
                        }
                        // RFC 3207 4.2: the client must say EHLO again.
                        tls_on = true;
                        greeted = false;
                        helo.clear();
                        txn = None;
                        continue;
                    }
                }
            }
            "STARTTLS" => io.step(Step::StartTls, None, "454 4.7.0 TLS not available".into()),
            "AUTH" if !cfg.auth.is_empty() => match io.auth_exchange(&arg) {
                None => return,
                Some(Err(r)) => Flow::Reply(r),
                Some(Ok((mech, user, password))) => {
                    let oauth = mech == "XOAUTH2" || mech == "OAUTHBEARER";
                    let ok = if mech == "EXTERNAL" {
                        shared.lock().conns[io.idx].client_cert
                    } else if oauth {
                        cfg.oauth_token
                            .as_ref()
                            .is_some_and(|t| *t.lock().unwrap() == password)
                    } else {
                        cfg.auth.iter().any(|(u, p)| *u == user && *p == password)
                    };
                    // A refused bearer token gets the error challenge first.
                    if oauth && !ok {
                        if !io.send("334 eyJzdGF0dXMiOiI0MDEifQ==") {
                            return;
                        }
                        if io.line().is_none() {
                            return;
                        }
                    }
                    shared.with_conn(io.idx, |c| {
                        c.auth.push(AuthAttempt {
                            mech,
                            user,
                            password,
                            ok,
                            tls: tls_on,
                        })
                    });
                    let normal = if ok {
                        "235 2.7.0 Authentication successful"
                    } else {
                        "535 5.7.8 Error: authentication failed: bad credentials"
                    };
                    io.step(Step::Auth, None, normal.into())
                }
            },
            "AUTH" => io.step(
                Step::Auth,
                None,
                "503 5.5.1 Error: authentication not enabled".into(),
            ),
            "BDAT" => Flow::Reply("502 5.5.1 Error: command not implemented".into()),
            _ => Flow::Reply("500 5.5.2 Error: command not recognized".into()),
        };
        match flow {
            Flow::End => return,
            Flow::Reply(r) => {
                if !io.send(&r) {
                    return;
                }
            }
        }
    }
}
