//! HTTPS requests of delivery: MTA-STS policy fetches (RFC 8461) and OAuth2
//! token refreshes (RFC 6749 §6). One way to make them, with ureq 3 on the
//! run's own rustls provider and trusted roots (`TlsContext::roots`), so
//! nothing from the environment changes what is trusted: no proxy from
//! `HTTPS_PROXY`, no `SSL_CERT_FILE`, no redirects, a size cap on the body and
//! one deadline for the whole request. The host name is resolved by the
//! caller (the run's `Dns`, so tests can use a loopback nameserver); ureq is
//! handed those addresses and never calls getaddrinfo.
//!
//! Why ureq: blocking (as the rest of delivery), small, rustls-based, and it
//! takes a custom resolver and root set; a hand-written HTTP/1.1 client would
//! have to get chunked encoding, keep-alive and header limits right itself.

#![allow(dead_code)] // until its first callers (MTA-STS, OAuth2) land

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::deliver::smtp::tls::TlsContext;

/// Why a request gave no usable answer. The text never holds the request's
/// body (it may carry a client secret or a refresh token).
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{0}: no address to connect to")]
    NoAddress(String),
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("{url}: answered with a redirect (HTTP {status}); redirects are not followed")]
    Redirect { url: String, status: u16 },
    #[error("{url}: body larger than {limit} bytes")]
    TooBig { url: String, limit: u64 },
    #[error("{url}: {why}")]
    Failed { url: String, why: String },
}

/// One request's limits and where to connect.
pub struct Request<'a> {
    /// `https://host[:port]/path`; only https is allowed.
    pub url: &'a str,
    /// The host's addresses, resolved by the caller (with the URL's port).
    pub addrs: &'a [SocketAddr],
    /// Deadline for the whole request: connect, TLS, headers and body.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_body: u64,
}

/// An answer: the HTTP status and the (size-capped) body. Non-2xx statuses
/// are answers too (an OAuth2 error body says why a refresh was refused).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GET `req.url`.
pub fn get(tls: &TlsContext, req: &Request) -> Result<Answer, HttpsError> {
    let agent = agent(tls, req)?;
    let resp = agent.get(req.url).call();
    answer(req, resp)
}

/// POST `form` as `application/x-www-form-urlencoded` to `req.url`.
pub fn post_form(
    tls: &TlsContext,
    req: &Request,
    form: &[(&str, &str)],
) -> Result<Answer, HttpsError> {
    let agent = agent(tls, req)?;
    let resp = agent.post(req.url).send_form(form.iter().copied());
    answer(req, resp)
}

fn agent(tls: &TlsContext, req: &Request) -> Result<ureq::Agent, HttpsError> {
    if req.addrs.is_empty() {
        return Err(HttpsError::NoAddress(req.url.to_string()));
    }
    let roots: Vec<Certificate<'static>> = tls
        .roots()
        .map_err(HttpsError::Setup)?
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let tls_config = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(tls.provider())
        .build();
    let config: Config = Config::builder()
        .https_only(true)
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .timeout_global(Some(req.timeout))
        .user_agent("vsendmail")
        .tls_config(tls_config)
        .build();
    let resolver = Fixed(req.addrs.to_vec());
    Ok(ureq::Agent::with_parts(
        config,
        DefaultConnector::default(),
        resolver,
    ))
}

fn answer(
    req: &Request,
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, HttpsError> {
    let failed = |e: ureq::Error| HttpsError::Failed {
        url: req.url.to_string(),
        why: e.to_string(),
    };
    let mut resp = resp.map_err(failed)?;
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        return Err(HttpsError::Redirect {
            url: req.url.to_string(),
            status,
        });
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(req.max_body)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => HttpsError::TooBig {
                url: req.url.to_string(),
                limit: req.max_body,
            },
            e => failed(e),
        })?;
    Ok(Answer { status, body })
}

/// The caller's addresses, whatever the URL's host: name resolution belongs
/// to the run's resolver.
#[derive(Debug)]
struct Fixed(Vec<SocketAddr>);

impl Resolver for Fixed {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for a in &self.0 {
            if out.try_push(*a).is_err() {
                break;
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Against a real HTTPS server on loopback (rustls, certificates from a
    //! CA made here with rcgen).
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::path::Path;

    struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
        pem_path: std::path::PathBuf,
    }

    fn new_ca(tag: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let pem_path =
            std::env::temp_dir().join(format!("vs-https-ca-{}-{tag}.pem", std::process::id()));
        std::fs::write(&pem_path, issuer.pem()).unwrap();
        Ca { issuer, pem_path }
    }

    /// Serves one request with `response` (status line and headers added)
    /// and returns the request's text.
    fn serve_once(
        ca: &Ca,
        name: &str,
        status: &str,
        extra: &str,
        body: Vec<u8>,
    ) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca.issuer)
            .unwrap();
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let t = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut req = String::new();
            let mut len = 0usize;
            {
                let mut r = BufReader::new(&mut tls);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return req;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    req.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut b = vec![0; len];
                r.read_exact(&mut b).unwrap();
                req.push_str(&String::from_utf8_lossy(&b));
            }
            let _ = tls.write_all(head.as_bytes());
            let _ = tls.write_all(&body);
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            req
        });
        (addr, t)
    }

    fn request<'a>(url: &'a str, addrs: &'a [SocketAddr]) -> Request<'a> {
        Request {
            url,
            addrs,
            timeout: Duration::from_secs(5),
            max_body: 64,
        }
    }

    #[test]
    fn get_post_redirect_cap_and_untrusted_certificate() {
        let ca = new_ca("a");
        let tls =
            TlsContext::with_roots(Path::new("/nonexistent/ca.crt"), Some(&ca.pem_path)).unwrap();

        let (addr, t) = serve_once(
            &ca,
            "mta-sts.example.test",
            "200 OK",
            "",
            b"version: STSv1\r\n".to_vec(),
        );
        let url = format!(
            "https://mta-sts.example.test:{}/.well-known/mta-sts.txt",
            addr.port()
        );
        let a = get(&tls, &request(&url, &[addr])).unwrap();
        assert_eq!(
            (a.status, a.body.as_slice()),
            (200, &b"version: STSv1\r\n"[..])
        );
        let req = t.join().unwrap();
        assert!(
            req.starts_with("GET /.well-known/mta-sts.txt HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("host: mta-sts.example.test"),
            "{req}"
        );

        let (addr, t) = serve_once(
            &ca,
            "login.example.test",
            "400 Bad Request",
            "",
            b"{\"error\":\"invalid_grant\"}".to_vec(),
        );
        let url = format!("https://login.example.test:{}/token", addr.port());
        let a = post_form(
            &tls,
            &request(&url, &[addr]),
            &[("grant_type", "refresh_token"), ("refresh_token", "r t&x")],
        )
        .unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.body, b"{\"error\":\"invalid_grant\"}");
        let req = t.join().unwrap();
        assert!(
            req.ends_with("grant_type=refresh_token&refresh_token=r+t%26x"),
            "{req}"
        );

        let (addr, t) = serve_once(
            &ca,
            "mta-sts.example.test",
            "301 Moved Permanently",
            "Location: https://elsewhere.test/\r\n",
            Vec::new(),
        );
        let url = format!("https://mta-sts.example.test:{}/", addr.port());
        let e = get(&tls, &request(&url, &[addr])).unwrap_err();
        assert!(matches!(e, HttpsError::Redirect { status: 301, .. }), "{e}");
        t.join().unwrap();

        let (addr, t) = serve_once(&ca, "mta-sts.example.test", "200 OK", "", vec![b'x'; 65]);
        let url = format!("https://mta-sts.example.test:{}/", addr.port());
        let e = get(&tls, &request(&url, &[addr])).unwrap_err();
        assert!(matches!(e, HttpsError::TooBig { limit: 64, .. }), "{e}");
        t.join().unwrap();

        // A certificate from a CA that is not trusted, and one for another name.
        let other = new_ca("b");
        let (addr, _t) = serve_once(&other, "mta-sts.example.test", "200 OK", "", Vec::new());
        let url = format!("https://mta-sts.example.test:{}/", addr.port());
        let e = get(&tls, &request(&url, &[addr])).unwrap_err();
        assert!(matches!(e, HttpsError::Failed { .. }), "{e}");
        let (addr, _t) = serve_once(&ca, "wrong.example.test", "200 OK", "", Vec::new());
        let url = format!("https://mta-sts.example.test:{}/", addr.port());
        let e = get(&tls, &request(&url, &[addr])).unwrap_err();
        assert!(matches!(e, HttpsError::Failed { .. }), "{e}");

        let e = get(&tls, &request("https://x.test/", &[])).unwrap_err();
        assert!(matches!(e, HttpsError::NoAddress(_)), "{e}");
        let (addr, _t) = serve_once(&ca, "x.test", "200 OK", "", Vec::new());
        let e = get(
            &tls,
            &request(&format!("http://x.test:{}/", addr.port()), &[addr]),
        )
        .unwrap_err();
        assert!(matches!(e, HttpsError::Failed { .. }), "{e}");
        let _ = std::fs::remove_file(&ca.pem_path);
        let _ = std::fs::remove_file(&other.pem_path);
    }
}
