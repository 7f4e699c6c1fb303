//! A real HTTPS server on a loopback port, for MTA-STS policy fetches.
//!
//! It serves every request with the current [`Answer`] (status line, extra
//! header lines, body), over rustls with the certificate chain it was started
//! with (tests make them with `support::pki`), and counts the requests and
//! keeps their request lines. The answer can be changed while it runs;
//! dropping it stops it (then the port refuses connections).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::pki::Chain;

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Answer {
    /// e.g. `200 OK`, `301 Moved Permanently`.
    pub status: String,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// `200 OK` with `body`.
    pub fn ok(body: &str) -> Answer {
        Answer {
            status: "200 OK".into(),
            headers: String::new(),
            body: body.as_bytes().to_vec(),
        }
    }
}

struct Shared {
    answer: Mutex<Answer>,
    requests: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct HttpsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Serve `answer` on a free port of 127.0.0.1 with `chain`.
    pub fn start(chain: Chain, answer: Answer) -> HttpsServer {
        let cfg = crate::support::sink::server_tls(chain.0, chain.1);
        let listener = TcpListener::bind("127.0.0.1:0").expect("https: bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            answer: Mutex::new(answer),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("https-{addr}"))
            .spawn(move || {
                for s in listener.incoming() {
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let (sh, cfg) = (sh.clone(), cfg.clone());
                    let _ = thread::Builder::new()
                        .name("https-conn".into())
                        .spawn(move || serve(s, cfg, &sh));
                }
            })
            .expect("https: spawn");
        HttpsServer {
            shared,
            addr,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answer every later request with `a`.
    pub fn set_answer(&self, a: Answer) {
        *self.shared.answer.lock().unwrap() = a;
    }

    /// The request lines (`GET /path HTTP/1.1`) seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, sh: &Shared) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut first = String::new();
    {
        let mut r = BufReader::new(&mut tls);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return; // a failed handshake ends here
            }
            if first.is_empty() {
                first = line.trim_end().to_string();
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
    }
    sh.requests.lock().unwrap().push(first);
    let a = sh.answer.lock().unwrap().clone();
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n{}\r\n",
        a.status,
        a.body.len(),
        a.headers
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&a.body);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
