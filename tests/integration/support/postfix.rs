//! A real Postfix (Debian's package) as an SMTP receiver: one private instance per call.
//!
//! It owns the life of each test instance. Every [`Postfix::start`] makes a
//! fresh directory tree (`conf/` with its own `main.cf` and `master.cf`,
//! `queue/` as the queue_directory, `data/` as the data_directory, `maillog`)
//! and runs that instance's master daemon directly (`master -c conf -w`), so
//! several instances run side by side and never touch `/etc/postfix` or the
//! system instance. An instance listens on `127.0.0.1:PORT` only (a free
//! port), skips client-name look-ups (`smtpd_peername_lookup = no`, so its
//! Received: line says `unknown [ADDR]`), accepts mail from 127.0.0.0/8 for any
//! domain, delivers nothing locally and hands every message to one address
//! only, `relayhost = [relay_to]` with DNS off. Dropping it stops the master
//! (SIGTERM to its master) and removes the tree (kept when the test panicked).

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Group, Uid, User, chown};

use super::TempDir;

const POSTFIX: &str = "/usr/sbin/postfix";
const MASTER: &str = "/usr/lib/postfix/sbin/master";

/// How to set an instance up.
#[derive(Clone, Debug)]
pub struct PostfixOpts {
    /// Hand every message on to this address (e.g. a sink's).
    pub relay_to: SocketAddr,
    /// Offer STARTTLS with a certificate issued by a fresh test CA
    /// ([`Postfix::ca_path`]) for `postfix.test` and 127.0.0.1.
    pub tls: bool,
    /// More `main.cf` lines (a later setting overrides an earlier one).
    pub extra_main_cf: Vec<String>,
    /// More `master.cf` lines.
    pub extra_master_cf: Vec<String>,
}

impl PostfixOpts {
    /// Relay to `relay_to`, no TLS, nothing extra.
    pub fn new(relay_to: SocketAddr) -> PostfixOpts {
        PostfixOpts {
            relay_to,
            tls: false,
            extra_main_cf: Vec::new(),
            extra_master_cf: Vec::new(),
        }
    }
}

/// A running private Postfix instance; stopped and removed when dropped.
pub struct Postfix {
    dir: TempDir,
    conf: PathBuf,
    addr: SocketAddr,
}

/// The services of master.cf (Debian's list, no chroot, no smtpd on port 25).
const SERVICES: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("postfix: cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "postfix: {what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A port that is free on 127.0.0.1 right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("postfix: no free port")
        .port()
}

fn mkdir(path: &Path, uid: u32, gid: u32, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("postfix: mkdir {}: {e}", path.display()));
    chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).expect("postfix: chown");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("postfix: chmod");
}

/// `[addr]:port` as Postfix's relayhost wants it.
fn relayhost(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("[{}]:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[ipv6:{}]:{}", v.ip(), v.port()),
    }
}

/// Make a test CA and a server certificate for postfix.test / 127.0.0.1 in `dir`.
fn make_certs(dir: &Path) {
    let sh = format!(
        "set -e; cd '{d}'
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=vsendmail test CA' \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj '/CN=postfix.test' -keyout key.pem -out req.pem 2>/dev/null
printf 'subjectAltName=DNS:postfix.test,DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile ext.cnf -out cert.pem 2>/dev/null
chmod 600 key.pem ca.key; chmod 644 cert.pem ca.pem",
        d = dir.display()
    );
    run_checked(
        Command::new("sh").arg("-c").arg(sh),
        "openssl (test certificates)",
    );
}

impl Postfix {
    /// Create, configure and start an instance; returns once it greets on its port.
    /// Panics (saying that `make test` installs Postfix) when Postfix is missing.
    pub fn start(opts: PostfixOpts) -> Postfix {
        if !Path::new(POSTFIX).exists() || !Path::new(MASTER).exists() {
            panic!(
                "Postfix is not installed ({POSTFIX} or {MASTER} missing): \
                 run `make test`, whose scripts/install-test-deps.sh installs it"
            );
        }
        let pf = User::from_name("postfix")
            .ok()
            .flatten()
            .expect("postfix: user `postfix` missing; run scripts/install-test-deps.sh");
        let postdrop = Group::from_name("postdrop")
            .ok()
            .flatten()
            .expect("postfix: group `postdrop` missing; run scripts/install-test-deps.sh");
        let (puid, pgid) = (pf.uid.as_raw(), postdrop.gid.as_raw());

        let dir = TempDir::new("vs-postfix");
        let base = dir.path().to_path_buf();
        let conf = base.join("conf");
        let queue = base.join("queue");
        let data = base.join("data");
        mkdir(&conf, 0, 0, 0o755);
        mkdir(&queue, 0, 0, 0o755);
        for sub in [
            "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
            "private", "saved", "trace",
        ] {
            mkdir(&queue.join(sub), puid, 0, 0o700);
        }
        mkdir(&queue.join("maildrop"), puid, pgid, 0o730);
        mkdir(&queue.join("public"), puid, pgid, 0o710);
        mkdir(&queue.join("pid"), 0, 0, 0o755);
        mkdir(&data, puid, 0, 0o700);
        // Lets scripts/test.sh stop instances whose test process died.
        fs::write(base.join("owner.pid"), std::process::id().to_string())
            .expect("postfix: owner.pid");
        if opts.tls {
            make_certs(&conf);
        }

        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            write_config(&base, &opts, port);
            // stdio to /dev/null: the daemon would hold pipes open for a while
            // (its messages go to the maillog file anyway).
            let status = Command::new(MASTER)
                .arg("-c")
                .arg(&conf)
                .arg("-w")
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("postfix: cannot run {MASTER}: {e}"));
            if !status.success() {
                last_err = format!(
                    "master -w failed ({status}); maillog:\n{}",
                    fs::read_to_string(base.join("maillog")).unwrap_or_default()
                );
                continue;
            }
            let p = Postfix { dir, conf, addr };
            match p.wait_greeting(Duration::from_secs(20)) {
                Ok(()) => return p,
                Err(e) => panic!(
                    "postfix: instance on {addr} does not greet: {e}\nmaillog:\n{}",
                    p.maillog()
                ),
            }
        }
        panic!("postfix: could not start an instance: {last_err}");
    }

    /// Connect until the 220 greeting arrives.
    fn wait_greeting(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        let mut err = String::new();
        while Instant::now() < end {
            match TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut line = String::new();
                    let _ = BufReader::new(&s).read_line(&mut line);
                    if line.starts_with("220") {
                        let _ = std::io::Write::write_all(&mut &s, b"QUIT\r\n");
                        return Ok(());
                    }
                    err = format!("greeting {line:?}");
                }
                Err(e) => err = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(err)
    }

    /// `127.0.0.1:PORT`, where its smtpd listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance's config directory (main.cf, master.cf, certificates).
    pub fn config_dir(&self) -> &Path {
        &self.conf
    }

    /// The test CA that issued the STARTTLS certificate (with `tls: true`):
    /// usable as vsendmail's `tls_ca_file`.
    pub fn ca_path(&self) -> PathBuf {
        self.config_dir().join("ca.pem")
    }

    /// The instance's log so far.
    pub fn maillog(&self) -> String {
        fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn master_pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.path().join("queue/pid/master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

fn write_config(base: &Path, opts: &PostfixOpts, port: u16) {
    let b = base.display();
    let v6 = opts.relay_to.is_ipv6();
    let mut main = format!(
        "# private test instance written by tests/integration/support/postfix.rs
compatibility_level = 3.6
queue_directory = {b}/queue
data_directory = {b}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {b}/maillog
maillog_file_prefixes = {b}
myhostname = postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1{v6if}
inet_protocols = {proto}
mynetworks = 127.0.0.0/8{v6net}
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
relayhost = {relay}
default_transport = smtp
relay_transport = smtp
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none
smtp_connect_timeout = 10s
message_size_limit = 104857600
mailbox_size_limit = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
",
        v6if = if v6 { ", ::1" } else { "" },
        proto = if v6 { "all" } else { "ipv4" },
        v6net = if v6 { ", [::1]/128" } else { "" },
        relay = relayhost(opts.relay_to),
    );
    if opts.tls {
        main.push_str(&format!(
            "smtpd_tls_security_level = may
smtpd_tls_cert_file = {b}/conf/cert.pem
smtpd_tls_key_file = {b}/conf/key.pem
smtpd_tls_received_header = yes
"
        ));
    } else {
        main.push_str("smtpd_tls_security_level = none\n");
    }
    for l in &opts.extra_main_cf {
        main.push_str(l);
        main.push('\n');
    }
    let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n{SERVICES}");
    for l in &opts.extra_master_cf {
        master.push_str(l);
        master.push('\n');
    }
    write_aged(&base.join("conf/main.cf"), &main);
    write_aged(&base.join("conf/master.cf"), &master);
}

/// Write a config file dated a minute ago: Postfix waits (in 300 ms steps, up
/// to 2 s) until a just-modified main.cf is old enough to be complete.
fn write_aged(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("postfix: write {}: {e}", path.display()));
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(past))
        .unwrap_or_else(|e| panic!("postfix: set mtime of {}: {e}", path.display()));
}

impl Drop for Postfix {
    /// Stop the instance: SIGTERM to its master (what `postfix stop` sends,
    /// without the script's one-second pause), wait until it is gone (the
    /// master ends its children), SIGKILL after 10 s; then remove the files.
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        match self.master_pid() {
            Some(pid) => {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = kill(pid, Signal::SIGTERM);
                let end = Instant::now() + Duration::from_secs(10);
                while kill(pid, None).is_ok() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if kill(pid, None).is_ok() {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            None => {
                let _ = Command::new(POSTFIX)
                    .arg("-c")
                    .arg(self.config_dir())
                    .arg("stop")
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .output();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "postfix instance kept for inspection: {}",
                self.dir.path().display()
            );
        }
    }
}
