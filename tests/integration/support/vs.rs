//! Running the built `vsendmail` binary the way a caller does, in a private test setup.
//!
//! It owns the per-test environment [`Env`]: a temporary directory (mode 0755)
//! holding `vsendmail.conf`, `virtusers`, `aliases`, a spool (`root:vstest`,
//! mode 2770) and `log.sock`, a Unix datagram socket on which the harness plays
//! syslog and collects the product's lines. [`Env::run`] runs the binary as
//! root with `-C <conf>`, [`Env::run_as`] as a throwaway user (through
//! `setpriv`, with the user's supplementary groups, environment cleared except
//! `PATH`), [`Env::cmd`] gives a bare `Command` for unusual invocations.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::TempDir;
use super::users;

/// The binary under test: cargo's build, or, when a directory above it is not
/// searchable by other users (a checkout under a private home), a copy in a
/// world-readable directory of /tmp made once per test process, so that
/// throwaway users can run it.
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_vsendmail"));
        let searchable = built
            .ancestors()
            .skip(1)
            .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
        if searchable {
            return built.display().to_string();
        }
        let dir = PathBuf::from(format!("/tmp/vsendmail-test-bin-{}", std::process::id()));
        let _ = fs::create_dir(&dir);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("bin: chmod");
        let copy = dir.join("vsendmail");
        fs::copy(built, &copy).expect("bin: copy the binary");
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("bin: chmod");
        copy.display().to_string()
    })
}

/// `PATH` given to the product.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a run of the binary produced.
#[derive(Clone, Debug)]
pub struct Out {
    /// The exit code; 128+N when killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    /// Panic (showing stdout/stderr) unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }
}

/// One config line: (table, key, full line). Table "" is the root table.
type ConfLine = (String, String, String);

/// A syslog datagram as received: the whole datagram and the message part.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// The whole datagram, e.g. `<22>Nov 29 05:10:01 vsendmail[812]: 4F2A..: uid=..`.
    pub raw: String,
    /// The part after `TAG[PID]: ` (the whole datagram if it has no such prefix).
    pub msg: String,
}

struct Syslog {
    sock: UnixDatagram,
    lines: Mutex<Vec<LogLine>>,
    stop: AtomicBool,
}

impl Syslog {
    fn lock(&self) -> MutexGuard<'_, Vec<LogLine>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read every datagram already queued, without waiting; call with the lock held.
    fn drain(&self, lines: &mut Vec<LogLine>) {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recv on a valid socket fd into a buffer we own.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return;
            }
            lines.push(parse_syslog(&buf[..n as usize]));
        }
    }
}

fn parse_syslog(d: &[u8]) -> LogLine {
    let raw = String::from_utf8_lossy(d)
        .trim_end_matches(['\n', '\0'])
        .to_string();
    let msg = match raw.find("]: ") {
        Some(p) => raw[p + 3..].to_string(),
        None => raw.clone(),
    };
    LogLine { raw, msg }
}

/// One test's private vsendmail setup. Removed when dropped (kept, with its
/// path printed, when the test panicked).
pub struct Env {
    dir: TempDir,
    conf: RefCell<Vec<ConfLine>>,
    syslog: Arc<Syslog>,
    listener: Option<JoinHandle<()>>,
    timeout: Cell<Duration>,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// A fresh setup. The config holds `hostname = "host.test"`, the paths of
    /// `virtusers`, `aliases` (both empty), `spool` and `syslog_socket` in the
    /// directory, and `dns = ["127.0.0.1:9"]` (a closed port: no test can reach
    /// a real nameserver by accident; tests with DNS set their own `dns`).
    pub fn new() -> Env {
        let gid = users::vstest_gid();
        let dir = TempDir::new("vs-env");
        let d = dir.path().to_path_buf();
        let spool = d.join("spool");
        fs::create_dir(&spool).expect("env: mkdir spool");
        nix::unistd::chown(&spool, Some(0.into()), Some(gid.into())).expect("env: chown spool");
        fs::set_permissions(&spool, fs::Permissions::from_mode(0o2770)).expect("env: chmod");
        let sock_path = d.join("log.sock");
        let sock = UnixDatagram::bind(&sock_path).expect("env: bind log.sock");
        fs::set_permissions(&sock_path, fs::Permissions::from_mode(0o666)).expect("env: chmod");
        let syslog = Arc::new(Syslog {
            sock,
            lines: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let sl = syslog.clone();
        let listener = thread::Builder::new()
            .name("env-syslog".into())
            .spawn(move || {
                while !sl.stop.load(Ordering::SeqCst) {
                    // Wait (without the lock) until a datagram is queued, then
                    // read under the lock, as log_records() does: every
                    // datagram is either queued or already in `lines`.
                    let mut pfd = libc::pollfd {
                        fd: sl.sock.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, on a socket that outlives the thread.
                    let r = unsafe { libc::poll(&mut pfd, 1, 50) };
                    if r > 0 {
                        let mut lines = sl.lock();
                        sl.drain(&mut lines);
                    }
                }
            })
            .expect("env: spawn");
        let env = Env {
            dir,
            conf: RefCell::new(Vec::new()),
            syslog,
            listener: Some(listener),
            timeout: Cell::new(Duration::from_secs(120)),
        };
        let p = |n: &str| d.join(n).display().to_string();
        env.write("virtusers", "");
        env.write("aliases", "");
        env.conf(&format!(
            "hostname = \"host.test\"\nvirtusers = \"{}\"\naliases = \"{}\"\nspool = \"{}\"\n\
             syslog_socket = \"{}\"\ndns = [\"127.0.0.1:9\"]",
            p("virtusers"),
            p("aliases"),
            p("spool"),
            p("log.sock")
        ));
        env
    }

    /// Append TOML lines to the config (one `key = value` per line; a `[table]`
    /// line switches table until the end of this call, each call starts at the
    /// root). A key already set in the same table is replaced in place.
    pub fn conf(&self, extra: &str) -> &Self {
        {
            let mut lines = self.conf.borrow_mut();
            let mut table = String::new();
            for line in extra.lines() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if t.starts_with('[') && t.ends_with(']') {
                    table = t[1..t.len() - 1].trim().to_string();
                    continue;
                }
                let key = t.split('=').next().unwrap_or("").trim().to_string();
                match lines
                    .iter_mut()
                    .find(|(tb, k, _)| *tb == table && *k == key)
                {
                    Some(l) => l.2 = t.to_string(),
                    None => lines.push((table.clone(), key, t.to_string())),
                }
            }
        }
        self.write_conf();
        self
    }

    /// Set the global `relay` to `smtp://ADDR` (e.g. a sink's address).
    pub fn relay(&self, addr: std::net::SocketAddr) -> &Self {
        let host = match addr {
            std::net::SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        self.conf(&format!("relay = \"smtp://{host}\""))
    }

    fn write_conf(&self) {
        let lines = self.conf.borrow();
        let mut text = String::from("# written by the test harness (support::vs)\n");
        for (_, _, l) in lines.iter().filter(|(t, _, _)| t.is_empty()) {
            text.push_str(l);
            text.push('\n');
        }
        let mut tables: Vec<&String> = Vec::new();
        for (t, _, _) in lines.iter().filter(|(t, _, _)| !t.is_empty()) {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
        for t in tables {
            text.push_str(&format!("\n[{t}]\n"));
            for (_, _, l) in lines.iter().filter(|(tb, _, _)| tb == t) {
                text.push_str(l);
                text.push('\n');
            }
        }
        self.write("vsendmail.conf", &text);
    }

    /// The config file's current text.
    pub fn conf_text(&self) -> String {
        fs::read_to_string(self.conf_path()).unwrap_or_default()
    }

    /// Replace the virtusers file.
    pub fn virtusers(&self, text: &str) -> &Self {
        self.write("virtusers", text);
        self
    }

    /// Replace the aliases file.
    pub fn aliases(&self, text: &str) -> &Self {
        self.write("aliases", text);
        self
    }

    /// Write a file (mode 0644) in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir().join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("env: write {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("env: chmod");
        p
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir().join("vsendmail.conf")
    }

    pub fn spool(&self) -> PathBuf {
        self.dir().join("spool")
    }

    /// How long a run may take before it is killed and the test fails (default 120 s).
    pub fn set_timeout(&self, d: Duration) -> &Self {
        self.timeout.set(d);
        self
    }

    /// Run `vsendmail -C <conf> ARGS...` as root with `stdin` as input.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut c = self.cmd(None);
        c.arg("-C").arg(self.conf_path()).args(args);
        self.output(c, stdin)
    }

    /// Run `vsendmail -C <conf> ARGS...` as the throwaway user `user` (created
    /// when missing, see [`users::user`]).
    pub fn run_as(&self, user: &str, args: &[&str], stdin: &[u8]) -> Out {
        let mut c = self.cmd(Some(user));
        c.arg("-C").arg(self.conf_path()).args(args);
        self.output(c, stdin)
    }

    /// A `Command` running the binary (as root, or as `user` through setpriv
    /// with its supplementary groups), environment cleared except `PATH`; no
    /// `-C` added. Add args/env as needed and run it with [`Env::output`].
    pub fn cmd(&self, user: Option<&str>) -> Command {
        self.cmd_program(user, Path::new(bin()))
    }

    /// Like [`Env::cmd`] but runs `program` (e.g. a link made by [`Env::link`]).
    pub fn cmd_program(&self, user: Option<&str>, program: &Path) -> Command {
        let mut c = match user {
            None => Command::new(program),
            Some(u) => {
                let (uid, gid) = users::user(u);
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        };
        c.env_clear().env("PATH", PATH).current_dir(self.dir());
        c
    }

    /// A symlink `<dir>/bin/NAME` to the binary (for argv[0] `mailq`, `newaliases`, `sendmail`).
    pub fn link(&self, name: &str) -> PathBuf {
        let bindir = self.dir().join("bin");
        let _ = fs::create_dir(&bindir);
        let p = bindir.join(name);
        if !p.exists() {
            std::os::unix::fs::symlink(bin(), &p).expect("env: symlink");
        }
        p
    }

    /// Run a prepared command with `stdin` as input, killing it after the timeout.
    pub fn output(&self, mut c: Command, stdin: &[u8]) -> Out {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let desc = format!("{c:?}");
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
        let pid = child.id();
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        // The writer stops quietly if the product does not read everything.
        let writer = thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let timeout = self.timeout.get();
        let res = match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let o = rx.recv().ok().and_then(|r| r.ok());
                panic!(
                    "{desc} did not finish within {timeout:?} (killed)\nstdout: {}\nstderr: {}",
                    o.as_ref()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default(),
                    o.as_ref()
                        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default(),
                );
            }
        };
        let _ = writer.join();
        let o = res.unwrap_or_else(|e| panic!("waiting for {desc}: {e}"));
        use std::os::unix::process::ExitStatusExt;
        let code = o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
        Out {
            code,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// The syslog lines received so far: the message part after `TAG[PID]: `.
    pub fn log_lines(&self) -> Vec<String> {
        self.log_records().into_iter().map(|l| l.msg).collect()
    }

    /// The syslog datagrams received so far, whole and parsed.
    /// Every line of the audit trail (`<spool>/audit/*.jsonl`), file by file.
    pub fn audit_lines(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.spool().join("audit"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .flat_map(|p| {
                fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn log_records(&self) -> Vec<LogLine> {
        let mut lines = self.syslog.lock();
        self.syslog.drain(&mut lines);
        lines.clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.syslog.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
    }
}
