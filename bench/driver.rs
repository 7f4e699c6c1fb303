//! Benchmark driver (`make bench` only): runs commands with stdin from a file
//! and times them without a shell in between, so sub-millisecond differences
//! stay visible. Built by `bench/run.sh` with plain `rustc` (std only).
//!
//! Subcommands (all output is `key=value` lines for run.sh to parse):
//! - `rr [opts] NAME=CMD...`: round robin. Each round runs every command once,
//!   the starting command rotating every round so no command always runs
//!   first; per command: median, p10, p90, mean, min wall time in ms, and for
//!   every command after the first the median of its per-round difference to
//!   the first one (a paired comparison that cancels drift of the machine).
//! - `par [opts] CMD`: `--n` runs of CMD, `--procs` at a time; messages/s.
//! - `stat PORT [reset]`: the bench sink's counters (`XSTAT`/`XRESET`).
//! - `gen-audit --template LINE_FILE --out DIR --records N --days D --end YYYY-MM-DD`:
//!   writes N audit records spread evenly over D daily files ending at END,
//!   each a copy of the template record with new connect/close times, source
//!   port, queue id and Message-ID (needle records for the queries are listed
//!   on stdout).
//! - `gen-log --template LINE_FILE --out DIR --records N --days D --end YYYY-MM-DD --users U`:
//!   the same for the per-recipient log (`log-YYYY-MM-DD.jsonl`): copies of
//!   the template record with new time, queue id, recipient, and one of U
//!   users (`bench0`..; uid 20000+k, identity `benchK@bench.example`).
//!
//! Options of rr and par: `--input FILE` (stdin of every run), `--stderr FILE`
//! (appended stderr of every run), `--uid N --gid N` (run as that user, no
//! supplementary groups), `--timeout S` (a run that takes longer is killed and
//! counted as failed; and if run.sh itself goes away, the run in flight is
//! killed and the driver exits), `--runs N`, `--warmup N` (rr), `--n N`, `--procs P` (par).
//! CMD is split on white space (run.sh uses paths without spaces).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    input: Option<String>,
    stderr: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    timeout: Duration,
    runs: usize,
    warmup: usize,
    n: usize,
    procs: usize,
    rest: Vec<String>,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        input: None,
        stderr: None,
        uid: None,
        gid: None,
        timeout: Duration::from_secs(60),
        runs: 100,
        warmup: 5,
        n: 100,
        procs: 8,
        rest: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let v = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--input" => o.input = Some(v()),
            "--stderr" => o.stderr = Some(v()),
            "--uid" => o.uid = Some(num(&v())),
            "--gid" => o.gid = Some(num(&v())),
            "--timeout" => o.timeout = Duration::from_secs(num(&v()) as u64),
            "--runs" => o.runs = num(&v()) as usize,
            "--warmup" => o.warmup = num(&v()) as usize,
            "--n" => o.n = num(&v()) as usize,
            "--procs" => o.procs = num(&v()) as usize,
            _ => {
                o.rest = args[i..].to_vec();
                return o;
            }
        }
        i += 2;
    }
    o
}

fn num(s: &str) -> u32 {
    s.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s}")))
}

fn die(msg: &str) -> ! {
    eprintln!("driver: {msg}");
    std::process::exit(64)
}

/// Kills runs that exceed the timeout. One slot per worker holds the pid and
/// deadline of the run in flight.
struct Watchdog {
    slots: Vec<Mutex<Option<(u32, Instant)>>>,
}

impl Watchdog {
    fn start(n: usize) -> Arc<Watchdog> {
        let w = Arc::new(Watchdog {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
        });
        let w2 = Arc::clone(&w);
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(200));
                // run.sh gone (even by SIGKILL): stop the run in flight and exit.
                let orphaned = std::os::unix::process::parent_id() != parent;
                if orphaned {
                    for s in &w2.slots {
                        if let Some((pid, _)) = *s.lock().unwrap() {
                            let _ = Command::new("kill")
                                .args(["-KILL", &pid.to_string()])
                                .status();
                        }
                    }
                    std::process::exit(130);
                }
                for s in &w2.slots {
                    let g = s.lock().unwrap();
                    if let Some((pid, deadline)) = *g
                        && Instant::now() > deadline
                    {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                }
            }
        });
        w
    }
}

/// Runs one command to completion; returns (wall time, success).
fn run_once(cmd: &[String], o: &Opts, wd: &Watchdog, slot: usize) -> (Duration, bool) {
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).stdout(Stdio::null());
    match &o.input {
        Some(f) => c.stdin(File::open(f).unwrap_or_else(|e| die(&format!("{f}: {e}")))),
        None => c.stdin(Stdio::null()),
    };
    match &o.stderr {
        Some(f) => c.stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .unwrap_or_else(|e| die(&format!("{f}: {e}"))),
        ),
        None => c.stderr(Stdio::null()),
    };
    if let Some(g) = o.gid {
        c.gid(g);
    }
    if let Some(u) = o.uid {
        c.uid(u);
    }
    let t0 = Instant::now();
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => die(&format!("{}: {e}", cmd[0])),
    };
    *wd.slots[slot].lock().unwrap() = Some((child.id(), t0 + o.timeout));
    let st = child.wait();
    let dt = t0.elapsed();
    *wd.slots[slot].lock().unwrap() = None;
    (dt, st.map(|s| s.success()).unwrap_or(false))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s
}

fn cmd_rr(args: &[String]) {
    let o = parse_opts(args);
    let cmds: Vec<(String, Vec<String>)> = o
        .rest
        .iter()
        .map(|a| {
            let (name, cmd) = a
                .split_once('=')
                .unwrap_or_else(|| die("rr wants NAME=CMD"));
            (
                name.to_string(),
                cmd.split_whitespace().map(String::from).collect(),
            )
        })
        .collect();
    if cmds.is_empty() {
        die("rr: no commands");
    }
    let wd = Watchdog::start(1);
    let k = cmds.len();
    let mut total_ok = 0usize;
    for _ in 0..o.warmup {
        for (_, c) in &cmds {
            total_ok += run_once(c, &o, &wd, 0).1 as usize;
        }
    }
    // times[i][round]; NaN marks a failed run, left out of the statistics.
    let mut times = vec![vec![f64::NAN; o.runs]; k];
    let mut fails = vec![0usize; k];
    let order: Vec<usize> = (0..o.runs * k).map(|n| (n / k + n % k) % k).collect();
    for (n, &i) in order.iter().enumerate() {
        let (dt, ok) = run_once(&cmds[i].1, &o, &wd, 0);
        if ok {
            total_ok += 1;
            times[i][n / k] = ms(dt);
        } else {
            fails[i] += 1;
        }
    }
    for i in 0..k {
        let ok: Vec<f64> = times[i].iter().copied().filter(|t| !t.is_nan()).collect();
        let s = sorted(&ok);
        let mean = if s.is_empty() {
            f64::NAN
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        };
        println!(
            "result name={} n={} fails={} median={:.4} p10={:.4} p90={:.4} mean={:.4} min={:.4}",
            cmds[i].0,
            s.len(),
            fails[i],
            quantile(&s, 0.5),
            quantile(&s, 0.1),
            quantile(&s, 0.9),
            mean,
            s.first().copied().unwrap_or(f64::NAN)
        );
    }
    println!("total ok={total_ok}");
    for i in 1..k {
        let d: Vec<f64> = (0..o.runs)
            .filter(|&r| !times[i][r].is_nan() && !times[0][r].is_nan())
            .map(|r| times[i][r] - times[0][r])
            .collect();
        let s = sorted(&d);
        println!(
            "paired name={} base={} n={} median_diff={:.4} p25={:.4} p75={:.4}",
            cmds[i].0,
            cmds[0].0,
            s.len(),
            quantile(&s, 0.5),
            quantile(&s, 0.25),
            quantile(&s, 0.75)
        );
    }
}

fn cmd_par(args: &[String]) {
    let o = Arc::new(parse_opts(args));
    if o.rest.len() != 1 {
        die("par wants one CMD string");
    }
    let cmd: Vec<String> = o.rest[0].split_whitespace().map(String::from).collect();
    let cmd = Arc::new(cmd);
    let wd = Watchdog::start(o.procs);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fails = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..o.procs)
        .map(|w| {
            let (o, cmd, wd, next, fails) = (
                Arc::clone(&o),
                Arc::clone(&cmd),
                Arc::clone(&wd),
                Arc::clone(&next),
                Arc::clone(&fails),
            );
            std::thread::spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < o.n {
                    let (_, ok) = run_once(&cmd, &o, &wd, w);
                    if !ok {
                        fails.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "par n={} procs={} fails={} secs={:.4} rate={:.2}",
        o.n,
        o.procs,
        fails.load(std::sync::atomic::Ordering::Relaxed),
        secs,
        o.n as f64 / secs
    );
}

fn cmd_stat(args: &[String]) {
    let port = args.first().unwrap_or_else(|| die("stat PORT [reset]"));
    let s = TcpStream::connect(("127.0.0.1", num(port) as u16))
        .unwrap_or_else(|e| die(&format!("connect: {e}")));
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    rd.read_line(&mut line)
        .unwrap_or_else(|e| die(&format!("greeting: {e}")));
    let verb = if args.get(1).map(String::as_str) == Some("reset") {
        "XRESET"
    } else {
        "XSTAT"
    };
    w.write_all(format!("{verb}\r\n").as_bytes()).unwrap();
    line.clear();
    rd.read_line(&mut line)
        .unwrap_or_else(|e| die(&format!("reply: {e}")));
    let _ = w.write_all(b"QUIT\r\n");
    println!("{}", line.trim_end().trim_start_matches("250 "));
}

/// Days since 1970-01-01 -> (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The string value of `key` in a flat one-line JSON object ("" if absent).
fn json_str(rec: &str, key: &str) -> String {
    let pat = format!("\"{key}\":");
    let Some(p) = rec.find(&pat) else {
        return String::new();
    };
    let v = rec[p + pat.len()..].trim_start();
    v.strip_prefix('"')
        .and_then(|v| v.split('"').next())
        .unwrap_or("")
        .to_string()
}

/// Seconds since the epoch -> `YYYY-MM-DDTHH:MM:SS` (UTC, no suffix).
fn rfc3339(t: i64) -> String {
    let (y, m, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Replaces the JSON value of `key` in a flat one-line object (string or
/// number value); the key must be present.
fn set_json(rec: &str, key: &str, value: &str) -> String {
    let pat = format!("\"{key}\":");
    let start = rec
        .find(&pat)
        .unwrap_or_else(|| die(&format!("template has no {key}")))
        + pat.len();
    let rest = &rec[start..];
    let ws = rest.len() - rest.trim_start().len();
    let vstart = start + ws;
    let b = rec.as_bytes();
    let vend = if b[vstart] == b'"' {
        let mut i = vstart + 1;
        while b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    } else {
        let mut i = vstart;
        while i < b.len() && b[i] != b',' && b[i] != b'}' {
            i += 1;
        }
        i
    };
    format!("{}{}{}", &rec[..vstart], value, &rec[vend..])
}

fn cmd_gen_audit(args: &[String]) {
    let mut template = None;
    let mut out = None;
    let mut records = 1_000_000usize;
    let mut days = 90usize;
    let mut end = None;
    let mut i = 0;
    while i + 1 < args.len() {
        let v = args[i + 1].clone();
        match args[i].as_str() {
            "--template" => template = Some(v),
            "--out" => out = Some(v),
            "--records" => records = num(&v) as usize,
            "--days" => days = num(&v) as usize,
            "--end" => end = Some(v),
            a => die(&format!("gen-audit: unknown {a}")),
        }
        i += 2;
    }
    let mut tpl = String::new();
    File::open(template.unwrap_or_else(|| die("--template")))
        .and_then(|mut f| f.read_to_string(&mut tpl))
        .unwrap_or_else(|e| die(&format!("template: {e}")));
    let tpl = tpl
        .lines()
        .next()
        .unwrap_or_else(|| die("empty template"))
        .to_string();
    let out = out.unwrap_or_else(|| die("--out"));
    let end = end.unwrap_or_else(|| die("--end YYYY-MM-DD"));
    let p: Vec<u32> = end.split('-').map(num).collect();
    let end_day = days_from_civil(p[0] as i64, p[1], p[2]);
    // Keep the template's own time suffix (".123Z", "+00:00", "Z") and
    // queue id length, in case the reader is strict about its own format.
    let connect = json_str(&tpl, "connect");
    let suffix = connect.get(19..).unwrap_or("Z").to_string();
    let qid_len = json_str(&tpl, "queue_id").len().max(6);
    let per_day = records.div_ceil(days);
    let mut n = 0usize;
    let needle_day = days / 2;
    for dd in 0..days {
        let day = end_day - (days - 1 - dd) as i64;
        let (y, m, d) = civil(day);
        let path = format!("{out}/{y:04}-{m:02}-{d:02}.jsonl");
        let mut w = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).unwrap_or_else(|e| die(&format!("{path}: {e}"))),
        );
        let count = per_day.min(records - n);
        for k in 0..count {
            let t = day * 86_400 + (k as i64 * 86_400) / count as i64;
            let port = 20_000 + (n % 40_000);
            let mut r = set_json(&tpl, "connect", &format!("\"{}{suffix}\"", rfc3339(t)));
            r = set_json(&r, "close", &format!("\"{}{suffix}\"", rfc3339(t + 1)));
            r = set_json(&r, "src", &format!("\"127.0.0.2:{port}\""));
            r = set_json(&r, "queue_id", &format!("\"{n:0qid_len$X}\""));
            r = set_json(&r, "message_id", &format!("\"<bench.{n}@bench.example>\""));
            if dd == needle_day && k == count / 2 {
                println!(
                    "needle src=127.0.0.2:{port} time={} message_id=<bench.{n}@bench.example>",
                    &rfc3339(t)[..16]
                );
            }
            w.write_all(r.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
            n += 1;
        }
        w.flush().unwrap();
    }
    println!("generated records={n} days={days}");
}

fn cmd_gen_log(args: &[String]) {
    let (mut template, mut out, mut end) = (None, None, None);
    let (mut records, mut days, mut users) = (1_000_000usize, 90usize, 100usize);
    let mut i = 0;
    while i + 1 < args.len() {
        let v = args[i + 1].clone();
        match args[i].as_str() {
            "--template" => template = Some(v),
            "--out" => out = Some(v),
            "--records" => records = num(&v) as usize,
            "--days" => days = num(&v) as usize,
            "--users" => users = num(&v).max(1) as usize,
            "--end" => end = Some(v),
            a => die(&format!("gen-log: unknown {a}")),
        }
        i += 2;
    }
    let mut tpl = String::new();
    File::open(template.unwrap_or_else(|| die("--template")))
        .and_then(|mut f| f.read_to_string(&mut tpl))
        .unwrap_or_else(|e| die(&format!("template: {e}")));
    let tpl = tpl.lines().next().unwrap_or_else(|| die("empty template")).to_string();
    let out = out.unwrap_or_else(|| die("--out"));
    let end = end.unwrap_or_else(|| die("--end YYYY-MM-DD"));
    let p: Vec<u32> = end.split('-').map(num).collect();
    let end_day = days_from_civil(p[0] as i64, p[1], p[2]);
    let per_day = records.div_ceil(days);
    let mut n = 0usize;
    for dd in 0..days {
        let day = end_day - (days - 1 - dd) as i64;
        let (y, m, d) = civil(day);
        let path = format!("{out}/log-{y:04}-{m:02}-{d:02}.jsonl");
        let mut w = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).unwrap_or_else(|e| die(&format!("{path}: {e}"))),
        );
        let count = per_day.min(records - n);
        for k in 0..count {
            let t = day * 86_400 + (k as i64 * 86_400) / count as i64;
            let u = n % users;
            let mut r = set_json(&tpl, "time", &format!("\"{}\"", rfc3339(t)));
            r = set_json(&r, "queue_id", &format!("\"{:014X}\"", n / 2));
            r = set_json(&r, "uid", &format!("{}", 20_000 + u));
            r = set_json(&r, "user", &format!("\"bench{u}\""));
            r = set_json(&r, "identity", &format!("\"bench{u}@bench.example\""));
            r = set_json(&r, "to", &format!("\"r{}@dest{}.example\"", n % 5000, n % 7));
            w.write_all(r.as_bytes()).unwrap();
            w.write_all(b"\n").unwrap();
            n += 1;
        }
        w.flush().unwrap();
    }
    println!("generated records={n} days={days} users={users}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(sub) = args.first() else {
        die("usage: driver rr|par|stat|gen-audit|gen-log ...")
    };
    match sub.as_str() {
        "rr" => cmd_rr(&args[1..]),
        "par" => cmd_par(&args[1..]),
        "stat" => cmd_stat(&args[1..]),
        "gen-audit" => cmd_gen_audit(&args[1..]),
        "gen-log" => cmd_gen_log(&args[1..]),
        _ => die("usage: driver rr|par|stat|gen-audit|gen-log ..."),
    }
}
