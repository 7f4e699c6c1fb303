//! A loopback OAuth2 token endpoint (RFC 6749 section 6, the refresh-token
//! grant) over HTTPS, its certificate for 127.0.0.1 issued by the shared test
//! CA (`pki::shared`). It checks the grant type, the client id and secret and
//! the current refresh token; issues access tokens that the relay sink
//! accepts (the shared `access` cell, see `SinkConfig::oauth_token`), with
//! `expires_in` as set; rotates the refresh token when `rotate` is on;
//! refuses every refresh with `invalid_grant` when `refuse` is on; and
//! counts the requests.

use rustls::ServerConfig;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub const CLIENT_ID: &str = "vs-client-id";
pub const CLIENT_SECRET: &str = "Cs-4f!client-secret-never-shown";
pub const FIRST_REFRESH: &str = "Rt-0-refresh-token-never-shown";

/// What the endpoint does and has seen.
#[derive(Debug)]
pub struct State {
    /// Requests received (good and bad).
    pub requests: usize,
    /// The refresh token accepted now.
    pub refresh_token: String,
    /// `expires_in` of the tokens issued.
    pub expires_in: u64,
    pub rotate: bool,
    pub refuse: bool,
    /// Why requests were refused, in order.
    pub refused: Vec<String>,
    /// Every access and refresh token issued (to look for them in outputs).
    pub issued: Vec<String>,
}

pub struct TokenServer {
    addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    /// The access token the relay accepts now.
    pub access: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(expires_in: u64) -> TokenServer {
        let (chain, key) = crate::support::pki::shared().leaf(&["127.0.0.1"], false);
        let cfg = Arc::new(
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            requests: 0,
            refresh_token: FIRST_REFRESH.to_string(),
            expires_in,
            rotate: false,
            refuse: false,
            refused: Vec::new(),
            issued: Vec::new(),
        }));
        let access = Arc::new(Mutex::new(String::from("no token issued yet")));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, ac, sp) = (state.clone(), access.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { continue };
                let (cfg, st, ac) = (cfg.clone(), st.clone(), ac.clone());
                std::thread::spawn(move || serve(tcp, cfg, &st, &ac));
            }
        });
        TokenServer {
            addr,
            state,
            access,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.addr.port())
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Every secret a test must never find outside the secrets file, the
    /// cache and the wire.
    pub fn secrets(&self) -> Vec<String> {
        let mut v = vec![CLIENT_SECRET.to_string(), FIRST_REFRESH.to_string()];
        v.extend(self.state.lock().unwrap().issued.clone());
        v
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(tcp: TcpStream, cfg: Arc<ServerConfig>, st: &Mutex<State>, access: &Mutex<String>) {
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = String::new();
    let mut len = 0usize;
    let body = {
        let mut r = BufReader::new(&mut tls);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut b = vec![0; len.min(64 * 1024)];
        if r.read_exact(&mut b).is_err() {
            return;
        }
        b
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|x| x.0 == k)
            .map(|x| x.1.clone())
            .unwrap_or_default()
    };
    let (status, json) = {
        let mut s = st.lock().unwrap();
        s.requests += 1;
        let why = if !head.starts_with("POST /token ") {
            Some("not POST /token")
        } else if get("grant_type") != "refresh_token" {
            Some("grant_type")
        } else if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
            Some("client")
        } else if s.refuse || get("refresh_token") != s.refresh_token {
            Some("refresh_token")
        } else {
            None
        };
        match why {
            Some(w) => {
                s.refused.push(w.to_string());
                (
                    "400 Bad Request",
                    "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS70000: the refresh token is not valid\"}".to_string(),
                )
            }
            None => {
                let n = s.requests;
                let token = format!("At-{n}-{}-access-token", std::process::id());
                *access.lock().unwrap() = token.clone();
                s.issued.push(token.clone());
                let rotated = if s.rotate {
                    let r = format!("Rt-{n}-rotated-refresh-token");
                    s.refresh_token = r.clone();
                    s.issued.push(r.clone());
                    format!(",\"refresh_token\":\"{r}\"")
                } else {
                    String::new()
                };
                (
                    "200 OK",
                    format!(
                        "{{\"token_type\":\"Bearer\",\"access_token\":\"{token}\",\"expires_in\":{}{rotated}}}",
                        s.expires_in
                    ),
                )
            }
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = tls.write_all(resp.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
