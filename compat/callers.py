#!/usr/bin/python3
"""compat/callers.py — the callers' compat suite (run by compat/run.sh, as root).

Runs the real programs that call sendmail (PHP mail(), PHPMailer, Symfony
Mailer, git send-email, mutt, bsd-mailx, s-nail, Debian's cron daemon, a
Python subprocess caller, lettre) against the vsendmail binary, each as a
throwaway Unix user whose identity in a test virtusers file binds its own
loopback source address, and checks what the receiver saw (peer address, HELO,
MAIL FROM, recipients, headers, the syslog line) and what the caller saw (its
return value, exit code, error text). It also installs vsendmail with
`make install-mta DESTDIR=...` and as a Debian package into throwaway roots
(mount namespace + overlays of /usr and /etc + chroot: the system is not
changed) and runs callers there against the installed /usr/sbin/sendmail.

How callers reach vsendmail (see compat/README.md): a wrapper script
TMP/bin/sendmail records its argv (so each test also checks the exact command
line the caller used) and execs `vsendmail -C TMP/conf/vsendmail.conf "$@"`.
In the installed roots there is no wrapper: /etc/vsendmail.conf of the root.

Usage: callers.py [NAME...]   (run only the tests whose name contains NAME)
Environment: VSENDMAIL_BIN (the binary; default target/release/vsendmail),
LETTRE_CALLER (compat/lettre-caller's binary), DEB (a built .deb; else the
deb tests build one with dist/build-deb.sh), COMPAT_KEEP=1 (keep the temp dir).
Prints one `ok NAME` / `FAIL NAME: why` line per test and `N passed, M failed`.
"""

import base64
import email
import email.policy
import fcntl
import glob
import grp
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPAT = os.path.join(ROOT, "compat")
BIN = os.environ.get("VSENDMAIL_BIN") or os.path.join(ROOT, "target/release/vsendmail")
LETTRE = os.environ.get("LETTRE_CALLER") or os.path.join(
    ROOT, "target/compat-lettre/release/lettre-caller")
KEEP = os.environ.get("COMPAT_KEEP") == "1"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT = "/usr/bin/git"  # Debian's git, the one git-email belongs to

GROUP = "vscompat"      # spool group of the wrapper setup; the test users are members
INST_GROUP = "vscinst"  # group of the installed set-gid binary; no test user is a member
HOST = "host.compat.example"

# login -> (sender, source address, HELO, options). One identity per caller,
# each with its own loopback source address, so the receiver's peer address
# and HELO prove whose identity the mail left with.
IDENT = {
    "vsc_php": ("php@php.compat.example", "127.0.0.2", "web1.php.compat.example", "from=*@php.compat.example"),
    "vsc_sym": ("app@sym.compat.example", "127.0.0.3", "mx.sym.compat.example", "from=*@sym.compat.example"),
    "vsc_git": ("dev@git.compat.example", "127.0.0.4", "git.compat.example", "from=*@git.compat.example"),
    "vsc_mutt": ("mutt@mutt.compat.example", "127.0.0.5", "mutt.compat.example", "from=*@mutt.compat.example"),
    "vsc_mailx": ("mailx@mailx.compat.example", "127.0.0.6", "mailx.compat.example", "from=*@mailx.compat.example"),
    "vsc_snail": ("snail@snail.compat.example", "127.0.0.7", "snail.compat.example", "from=*@snail.compat.example"),
    "vsc_cron": ("cron@cron.compat.example", "127.0.0.8", "cron.compat.example", ""),
    "vsc_cron2": ("@cron2.compat.example", "127.0.0.9", "cron2.compat.example", ""),
    "vsc_py": ("py@py.compat.example", "127.0.0.10", "py.compat.example", "from=*@py.compat.example"),
    "vsc_lettre": ("lettre@lettre.compat.example", "127.0.0.11", "lettre.compat.example", "from=*@lettre.compat.example"),
    "vsc_inst": ("inst@inst.compat.example", "127.0.0.12", "inst.compat.example", ""),
    "vsc_deb": ("deb@deb.compat.example", "127.0.0.13", "deb.compat.example", ""),
    "vsc_replay": ("replay@replay.compat.example", "127.0.0.14", "replay.compat.example", ""),
}
NO_IDENTITY = "vsc_none"  # no virtusers line: sends as the host
USERS = list(IDENT) + [NO_IDENTITY]


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def eq(actual, expected, what):
    if actual != expected:
        raise Fail("%s: expected %r, got %r" % (what, expected, actual))


def short(b, n=600):
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    b = b.strip()
    return b if len(b) <= n else b[:n] + "..."


def sender_of(login):
    s = IDENT[login][0]
    return login + s if s.startswith("@") else s


def domain_of(login):
    return sender_of(login).split("@", 1)[1]


# ---------------------------------------------------------------- environment

class Env:
    T = None        # the temp dir (mode 0755)
    sink = None     # the sink process
    port = None
    holder = None   # the process holding the private mount namespace
    uids = {}
    token_n = 0


def run(cmd, input=None, timeout=120, check_rc=True, **kw):
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise Fail("%s exited %d: %s" % (" ".join(map(str, cmd))[:200], p.returncode,
                                          short(p.stderr + p.stdout)))
    return p


def token(name):
    Env.token_n += 1
    return "tok-%s-%d-%d" % (name.replace("_", "-"), os.getpid(), Env.token_n)


def home(login):
    return os.path.join(Env.T, "home", login)


def user_env(login, extra=None):
    e = {"PATH": PATH, "HOME": home(login), "LANG": "C.UTF-8", "USER": login, "LOGNAME": login}
    e.update(extra or {})
    return e


def as_user(login):
    uid = pwd.getpwnam(login).pw_uid
    gid = pwd.getpwnam(login).pw_gid
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--init-groups", "--"]


def run_as(login, argv, input=b"", env=None, timeout=90, cwd=None):
    """Run argv as the throwaway user (real and effective ids, its groups)."""
    return subprocess.run(as_user(login) + argv, input=input, capture_output=True,
                          timeout=timeout, env=env or user_env(login), cwd=cwd or home(login))


def write(path, text, mode=0o644, owner=None):
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    with open(path, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    os.chmod(path, mode)
    if owner:
        u = pwd.getpwnam(owner)
        os.chown(path, u.pw_uid, u.pw_gid)


def ensure_group(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        run(["groupadd", "--system", name], check_rc=False)
        return grp.getgrnam(name).gr_gid


def setup_users():
    ensure_group(GROUP)
    ensure_group(INST_GROUP)
    for login in USERS:
        h = home(login)
        os.makedirs(h, exist_ok=True)
        try:
            pwd.getpwnam(login)
            run(["usermod", "-d", h, "-s", "/usr/sbin/nologin", "-G", GROUP, login])
        except KeyError:
            run(["useradd", "-M", "-d", h, "-s", "/usr/sbin/nologin", "-U", "-G", GROUP, login])
        u = pwd.getpwnam(login)
        os.chown(h, u.pw_uid, u.pw_gid)
        os.chmod(h, 0o755)
        Env.uids[u.pw_uid] = login


def remove_users():
    for login in USERS:
        subprocess.run(["userdel", login], capture_output=True)
        subprocess.run(["groupdel", login], capture_output=True)
    for g in (GROUP, INST_GROUP):
        subprocess.run(["groupdel", g], capture_output=True)


def virtusers_text():
    lines = ["# compat suite identities (compat/callers.py)"]
    for login, (sender, src, helo, opts) in IDENT.items():
        lines.append("%-12s %-32s %-11s helo=%s %s" % (login, sender, src, helo, opts))
    return "\n".join(lines) + "\n"


def conf_text(spool, virtusers, aliases, syslog):
    return ("# compat suite (compat/callers.py)\n"
            'hostname = "%s"\nvirtusers = "%s"\naliases = "%s"\nspool = "%s"\n'
            'relay = "smtp://127.0.0.1:%d"\nsyslog_socket = "%s"\ndns = ["127.0.0.1:9"]\n'
            % (HOST, virtusers, aliases, spool, Env.port, syslog))


WRAPPER = """#!/bin/bash
# compat suite wrapper: records its argv for the suite (one file per call,
# NUL-separated), then runs vsendmail with the test config. The arguments reach
# vsendmail unchanged, after "-C CONF"; argv[0] is this script's path.
f=$(mktemp "{argv}/call.XXXXXXXX" 2>/dev/null) && printf '%s\\0' "$@" > "$f"
exec -a "$0" {bin} {conf} "$@"
"""


def setup():
    T = Env.T = tempfile.mkdtemp(prefix="vsc-compat-", dir="/tmp")
    os.chmod(T, 0o755)
    for d in ("bin", "conf", "sink", "scripts", "home"):
        os.makedirs(os.path.join(T, d), mode=0o755)
    os.makedirs(T + "/argv")
    os.chmod(T + "/argv", 0o1777)
    setup_users()
    # the binaries and scripts, where every user can read them
    shutil.copy(BIN, T + "/bin/vsendmail")
    os.chmod(T + "/bin/vsendmail", 0o755)
    if os.path.exists(LETTRE):
        shutil.copy(LETTRE, T + "/bin/lettre-caller")
        os.chmod(T + "/bin/lettre-caller", 0o755)
    for f in glob.glob(COMPAT + "/php/*.php") + glob.glob(COMPAT + "/py/*.py"):
        shutil.copy(f, T + "/scripts/")
        os.chmod(T + "/scripts/" + os.path.basename(f), 0o755)
    # the receiver
    Env.sink = subprocess.Popen(["/usr/bin/python3", COMPAT + "/sink.py", T + "/sink",
                                 "--syslog", T + "/log.sock"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = Env.sink.stdout.readline()
    check(line.startswith("listening "), "the sink did not start: %r" % line)
    Env.port = int(line.split()[1])
    deadline = time.time() + 10
    while not os.path.exists(T + "/log.sock") and time.time() < deadline:
        time.sleep(0.05)
    # the wrapper setup: spool root:vscompat 2770, config, virtusers, aliases
    os.makedirs(T + "/spool")
    os.chown(T + "/spool", 0, grp.getgrnam(GROUP).gr_gid)
    os.chmod(T + "/spool", 0o2770)
    write(T + "/conf/virtusers", virtusers_text())
    write(T + "/conf/aliases", "# compat suite\nvsc-ops: ops@compat.example\n")
    write(T + "/conf/vsendmail.conf",
          conf_text(T + "/spool", T + "/conf/virtusers", T + "/conf/aliases", T + "/log.sock"))
    write(T + "/bin/sendmail", WRAPPER.format(argv=T + "/argv", bin=T + "/bin/vsendmail",
                                              conf="-C " + T + "/conf/vsendmail.conf"), 0o755)
    for name in ("mailq", "newaliases"):
        os.symlink("sendmail", T + "/bin/" + name)
    # a second setup whose temporary failures are not queued (exit 75)
    write(T + "/conf/noqueue.conf",
          conf_text(T + "/spool", T + "/conf/virtusers", T + "/conf/aliases", T + "/log.sock") + "queue = false\n")
    os.makedirs(T + "/bin/noqueue")
    write(T + "/bin/noqueue/sendmail", WRAPPER.format(argv=T + "/argv", bin=T + "/bin/vsendmail",
                                                      conf="-C " + T + "/conf/noqueue.conf"), 0o755)


def teardown():
    if Env.holder:
        Env.holder.kill()
        Env.holder.wait()
    if Env.sink:
        try:
            Env.sink.stdin.close()
            Env.sink.wait(timeout=5)
        except Exception:
            Env.sink.kill()
    remove_users()
    if Env.T and not KEEP:
        shutil.rmtree(Env.T, ignore_errors=True)
    elif Env.T:
        print("compat: kept %s" % Env.T)




def wrapper():
    return Env.T + "/bin/sendmail"


# ---------------------------------------------------------------- observations

class Msg:
    def __init__(self, d):
        self.d = d
        self.raw = base64.b64decode(d["data_b64"])
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        self.peer, self.helo, self.helo_cmd = d["peer"], d["helo"], d["helo_cmd"]
        self.mail_from, self.rcpts = d["mail_from"], d["rcpts"]

    def h(self, name):
        v = self.msg.get(name)
        return None if v is None else str(v)

    def hs(self, name):
        return [str(v) for v in self.msg.get_all(name, [])]

    def body(self):
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""

    def __repr__(self):
        return "<msg peer=%s helo=%s from=%s rcpts=%s>" % (self.peer, self.helo, self.mail_from, self.rcpts)


def messages():
    out = []
    for f in sorted(glob.glob(Env.T + "/sink/msg-*.json")):
        with open(f) as fh:
            out.append(Msg(json.load(fh)))
    return out


def wait_msgs(tok, count=1, timeout=30):
    """The messages whose data contains tok, once there are at least count."""
    deadline = time.time() + timeout
    while True:
        got = [m for m in messages() if tok.encode() in m.raw]
        if len(got) >= count or time.time() > deadline:
            break
        time.sleep(0.1)
    check(len(got) >= count, "the receiver got %d message(s) with %s, expected %d" % (len(got), tok, count))
    return got


def no_msg(tok, settle=1.0):
    time.sleep(settle)
    got = [m for m in messages() if tok.encode() in m.raw]
    check(not got, "the receiver got a message it should not have: %r" % got)


def check_identity(m, login, mail_from=None):
    """Peer address, HELO and MAIL FROM are the identity's; Received: names the user."""
    if login == NO_IDENTITY:
        src, helo, sender = "127.0.0.1", HOST, "%s@%s" % (login, HOST)
    else:
        sender, src, helo = sender_of(login), IDENT[login][1], IDENT[login][2]
    eq(m.peer, src, "peer (source) address")
    eq(m.helo_cmd, "EHLO", "greeting command")
    eq(m.helo, helo, "HELO name")
    eq(m.mail_from, mail_from if mail_from is not None else sender, "MAIL FROM")
    rec = m.hs("Received")
    check(rec, "no Received: header")
    check(login in rec[0] and str(pwd.getpwnam(login).pw_uid) in rec[0],
          "the first Received: does not name %s and its uid: %r" % (login, rec[0]))
    check(b"\n" not in m.raw.replace(b"\r\n", b""), "a bare LF reached the wire")
    check(b"\r" not in m.raw.replace(b"\r\n", b""), "a bare CR reached the wire")


def syslog_lines(login):
    try:
        with open(Env.T + "/sink/syslog.jsonl") as f:
            return [json.loads(l)["line"] for l in f if ("user=%s " % login) in l]
    except FileNotFoundError:
        return []


def check_syslog(login, rcpt):
    """vsendmail's syslog line: user, identity, src=ADDR:PORT, to=<rcpt>, status=sent."""
    src = IDENT[login][1] if login in IDENT else None
    deadline = time.time() + 5
    while True:
        lines = [l for l in syslog_lines(login) if ("to=<%s>" % rcpt) in l and "status=sent" in l]
        if lines or time.time() > deadline:
            break
        time.sleep(0.1)
    check(lines, "no syslog line user=%s to=<%s> status=sent" % (login, rcpt))
    if src:
        check(any(("src=%s:" % src) in l for l in lines), "syslog line without src=%s: %r" % (src, lines[0]))


def argv_calls(login, argvdir=None):
    """The argv lists the wrapper recorded for this user's calls, oldest first."""
    uid = pwd.getpwnam(login).pw_uid
    calls = []
    for f in glob.glob((argvdir or Env.T + "/argv") + "/call.*"):
        st = os.stat(f)
        if st.st_uid == uid:
            with open(f, "rb") as fh:
                parts = fh.read().split(b"\0")[:-1]
            calls.append((st.st_mtime_ns, f, [p.decode("utf-8", "replace") for p in parts]))
    return [c[2] for c in sorted(calls)]


def clear_argv(login):
    uid = pwd.getpwnam(login).pw_uid
    for f in glob.glob(Env.T + "/argv/call.*"):
        if os.stat(f).st_uid == uid:
            os.unlink(f)


def one_call(login):
    calls = argv_calls(login)
    eq(len(calls), 1, "number of sendmail calls")
    return calls[0]


# ---------------------------------------------------------------- the tests

TESTS = []


def test(caller):
    def deco(f):
        TESTS.append((f.__name__, caller, f))
        return f
    return deco


def php(login, script, args, ini=None):
    cmd = ["php", "-d", "sendmail_path=%s -t -i" % wrapper()]
    for k, v in (ini or {}).items():
        cmd += ["-d", "%s=%s" % (k, v)]
    p = run_as(login, cmd + [Env.T + "/scripts/" + script] + args)
    try:
        return json.loads(p.stdout.decode().strip().splitlines()[-1]), p
    except (ValueError, IndexError):
        raise Fail("php %s printed no result (exit %d): %s" % (script, p.returncode, short(p.stdout + p.stderr)))


@test("PHP mail()")
def php_mail(t=None):
    """mail() with the default sendmail_path `sendmail -t -i`: recipients from
    To:/Cc:/Bcc:, Bcc: removed, PHP's mixed LF/CRLF made CRLF."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php_mail")
    res, p = php(login, "mail.php", ["to@dest.example", "php mail " + tok,
                                     "Hello from PHP.\nSecond line %s\n.\n..dots stay\n" % tok,
                                     "Cc: cc@dest.example\r\nBcc: hidden@dest.example\r\nX-Mailer: compat"],
                 {"mail.add_x_header": "1"})
    eq(res["result"], True, "mail() return value")
    eq(one_call(login), ["-t", "-i"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["cc@dest.example", "hidden@dest.example", "to@dest.example"], "recipients")
    eq(m.hs("Bcc"), [], "Bcc: header on the wire")
    eq(m.h("Subject"), "php mail " + tok, "Subject")
    eq(m.h("From"), sender_of(login), "From: (added from the identity)")
    check(m.h("Message-ID") and m.h("Message-ID").rstrip(">").endswith("@" + domain_of(login)),
          "Message-ID not in the identity's domain: %r" % m.h("Message-ID"))
    check(m.h("Date"), "no Date: added")
    # PHP's X-PHP-Originating-Script is attribution for the audit trail and
    # --log (script=), removed from the message (keep_php_header = false).
    eq(m.h("X-PHP-Originating-Script"), None, "X-PHP-Originating-Script left in the message")
    check(b"\r\n.\r\n..dots stay\r\n" in m.body(), "dot lines changed (-i): %r" % m.body())
    check_syslog(login, "to@dest.example")


@test("PHP mail()")
def php_mail_fifth_parameter(t=None):
    """mail(..., '-fnews@php...'): the fifth parameter is appended to the
    command line; an -f within the identity's from= becomes MAIL FROM."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php5")
    res, p = php(login, "mail.php", ["to@dest.example", "fifth " + tok, "body " + tok,
                                     "From: News <news@php.compat.example>", "-fnews@php.compat.example"])
    eq(res["result"], True, "mail() return value")
    eq(one_call(login), ["-t", "-i", "-fnews@php.compat.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login, mail_from="news@php.compat.example")
    eq(m.h("From"), "News <news@php.compat.example>", "From:")


@test("PHP mail()")
def php_mail_foreign_sender(t=None):
    """-f outside the identity's from= (sender_policy = rewrite): MAIL FROM is
    the identity's, with X-Authentication-Warning; mail() still succeeds."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-foreign")
    res, p = php(login, "mail.php", ["to@dest.example", "foreign " + tok, "body " + tok, "",
                                     "-fceo@bank.example"])
    eq(res["result"], True, "mail() return value")
    eq(one_call(login), ["-t", "-i", "-fceo@bank.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    check(m.hs("X-Authentication-Warning"), "no X-Authentication-Warning for the rewritten sender")


@test("PHP mail()")
def php_mail_header_injection(t=None):
    """A subject carrying CRLF + Bcc: (header injection) adds no recipient and
    no header: PHP flattens it and vsendmail sees one Subject line."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-inj")
    res, p = php(login, "mail.php", ["to@dest.example",
                                     "hi " + tok + "\r\nBcc: victim@evil.example\nCc: victim2@evil.example",
                                     "body " + tok, ""])
    eq(res["result"], True, "mail() return value")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(m.rcpts, ["to@dest.example"], "recipients")
    eq(m.hs("Bcc") + m.hs("Cc"), [], "injected headers")
    check("victim@evil.example" in (m.h("Subject") or ""), "Subject lost the (harmless) text: %r" % m.h("Subject"))


@test("PHP mail()")
def php_mail_failure_returns_false(t=None):
    """The receiver refuses the only recipient (550): vsendmail exits 69 with a
    `vsendmail:` message on stderr, and mail() returns false."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-fail")
    res, p = php(login, "mail.php", ["reject-me@dest.example", "fail " + tok, "body " + tok, ""])
    eq(res["result"], False, "mail() return value")
    err = p.stderr.decode(errors="replace")
    check("vsendmail: " in err and "550" in err, "stderr (passed through by PHP): %r" % short(err))
    eq(one_call(login), ["-t", "-i"], "argv")


@test("PHP mail()")
def php_mail_partial_failure_returns_true(t=None):
    """One recipient refused (550), one accepted: without an -oe flag vsendmail
    exits 0, so mail() returns true (an application that retries would send a
    duplicate to the one who got it); the refusal is on stderr and bounced."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-partial")
    res, p = php(login, "mail.php", ["ok-%s@dest.example, reject-%s@dest.example" % (tok, tok),
                                     "partial " + tok, "body " + tok, ""])
    eq(res["result"], True, "mail() return value")
    err = p.stderr.decode(errors="replace")
    check("vsendmail: " in err and "550" in err, "stderr (passed through by PHP): %r" % short(err))
    ms = wait_msgs(tok, count=2)
    sent = [m for m in ms if m.mail_from != ""]
    bounces = [m for m in ms if m.mail_from == ""]
    eq([m.rcpts for m in sent], [["ok-%s@dest.example" % tok]], "delivered recipients")
    eq([m.rcpts for m in bounces], [[sender_of(login)]], "the bounce goes to the sender")


@test("PHP mail()")
def php_mail_tempfail_queued(t=None):
    """A temporary failure (451): the message stays queued, vsendmail exits 0,
    mail() returns true; mailq (as the user) lists it with the reply."""
    login = "vsc_php"
    tok = token("php-temp")
    res, p = php(login, "mail.php", ["tempfail-" + tok + "@dest.example", "temp " + tok, "body " + tok, ""])
    eq(res["result"], True, "mail() return value")
    q = run_as(login, [Env.T + "/bin/mailq"])
    out = q.stdout.decode(errors="replace")
    eq(q.returncode, 0, "mailq exit code")
    check(("tempfail-" + tok) in out and "451" in out, "mailq output: %r" % short(out))
    qid = out.split("\n")[1].split()[0].rstrip("*!") if "\n" in out else ""
    d = run_as(login, [wrapper(), "--delete", "user=" + login])
    eq(d.returncode, 0, "--delete exit code (%s)" % short(d.stderr))
    check(qid in d.stdout.decode(), "--delete did not name %s: %r" % (qid, short(d.stdout)))


@test("PHP mail()")
def php_mail_exit_75(t=None):
    """With `queue = false` a temporary failure exits 75 (EX_TEMPFAIL) and the
    message is not kept. PHP's mail() returns false for it: its source means
    to accept EX_TEMPFAIL, but compares pclose()'s raw wait status (75 << 8)
    with 75, so on Linux only exit 0 is success (PHP 8.2 as Debian ships it)."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-75")
    cmd = ["php", "-d", "sendmail_path=%s/bin/noqueue/sendmail -t -i" % Env.T, Env.T + "/scripts/mail.php",
           "tempfail-" + tok + "@dest.example", "temp " + tok, "body " + tok, ""]
    p = run_as(login, cmd)
    eq(p.stdout.decode().strip(), '{"result":false}', "mail() (stderr %s)" % short(p.stderr))
    err = p.stderr.decode(errors="replace")
    check("vsendmail: " in err and "451" in err, "vsendmail's stderr: %r" % short(err))
    eq(one_call(login), ["-t", "-i"], "argv")
    # the same command line, run directly: exit code 75
    p = run_as(login, [Env.T + "/bin/noqueue/sendmail", "-t", "-i"],
               input=("To: tempfail-%s@dest.example\nSubject: t\n\nbody\n" % tok).encode())
    eq(p.returncode, 75, "exit code with queue = false")
    q = run_as(login, [Env.T + "/bin/mailq"])
    check(("tempfail-" + tok) not in q.stdout.decode(errors="replace"), "the message was queued: %r" % short(q.stdout))


@test("PHP mail()")
def php_mail_argv_injection(t=None):
    """The CVE-2016-10033 class through the fifth parameter: `-X file` never
    writes the file (refused with a warning), `-OQueueDirectory=` is ignored."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-x")
    log = Env.T + "/home/%s/x-%s.php" % (login, tok)
    res, p = php(login, "mail.php", ["to@dest.example", "x " + tok, "<?php system($_GET['c']); ?> " + tok,
                                     "", "-X%s -OQueueDirectory=/tmp" % log])
    eq(one_call(login), ["-t", "-i", "-X" + log, "-OQueueDirectory=/tmp"], "argv")
    check(not os.path.exists(log), "-X wrote %s" % log)
    err = p.stderr.decode(errors="replace")
    check("vsendmail: " in err and "-X" in err, "no warning about -X on stderr: %r" % short(err))
    eq(res["result"], True, "mail() return value")
    (m,) = wait_msgs(tok)
    check_identity(m, login)


@test("PHP mail()")
def php_mail_cve_2016_10033(t=None):
    """The PHPMailer < 5.2.18 payload through mail()'s fifth parameter: the
    shell splits it into `-fattacker\\ -oQ/tmp/ -X/path some"@email.com`.
    The malformed sender is refused (65, mail() is false), no file is written,
    nothing is sent."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("php-cve")
    log = Env.T + "/home/%s/cve-%s.php" % (login, tok)
    res, p = php(login, "mail.php", ["to@dest.example", "cve " + tok, "<?php phpinfo(); ?> " + tok, "",
                                     '-f"attacker\\" -oQ/tmp/ -X%s some"@email.com' % log])
    eq(one_call(login), ["-t", "-i", "-fattacker\\", "-oQ/tmp/", "-X" + log, 'some"@email.com'], "argv")
    check(not os.path.exists(log), "-X wrote %s" % log)
    err = p.stderr.decode(errors="replace")
    check("vsendmail: " in err and "attacker" in err, "vsendmail's stderr: %r" % short(err))
    eq(res["result"], False, "mail() return value (the malformed -f is refused with 65)")
    no_msg(tok, settle=0.3)


@test("PHPMailer isSendmail()")
def phpmailer_sendmail(t=None):
    """PHPMailer 6.6 isSendmail(): `sendmail_path -oi -f<sender> -t` (with the
    default path: `-t -i -oi -fX -t`), Bcc: read and removed."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("phpmailer")
    res, p = php(login, "phpmailer.php", ["sendmail", "site@php.compat.example", "to@dest.example",
                                          "bcc@dest.example", "phpmailer " + tok, "body " + tok])
    eq(res["result"], True, "send() (%s)" % res.get("error"))
    eq(one_call(login), ["-t", "-i", "-oi", "-fsite@php.compat.example", "-t"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login, mail_from="site@php.compat.example")
    eq(sorted(m.rcpts), ["bcc@dest.example", "to@dest.example"], "recipients")
    eq(m.hs("Bcc"), [], "Bcc: header on the wire")
    eq(m.h("From"), "Compat Site <site@php.compat.example>", "From:")


@test("PHPMailer isMail()")
def phpmailer_mail(t=None):
    """PHPMailer isMail() (WordPress's wp_mail): PHP's mail() with -f<sender>."""
    login = "vsc_php"
    clear_argv(login)
    tok = token("phpmailer-mail")
    res, p = php(login, "phpmailer.php", ["mail", "wp@php.compat.example", "to@dest.example", "",
                                          "wp " + tok, "body " + tok])
    eq(res["result"], True, "send() (%s)" % res.get("error"))
    eq(one_call(login), ["-t", "-i", "-fwp@php.compat.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login, mail_from="wp@php.compat.example")


@test("PHPMailer isSendmail()")
def phpmailer_sendmail_failure(t=None):
    """A refused recipient: vsendmail exits non-zero, PHPMailer's send() is false."""
    login = "vsc_php"
    tok = token("phpmailer-fail")
    res, p = php(login, "phpmailer.php", ["sendmail", "site@php.compat.example", "reject-" + tok + "@dest.example",
                                          "", "fail " + tok, "body " + tok])
    eq(res["result"], False, "send()")
    check("Could not execute" in res["error"] or "sendmail" in res["error"].lower(),
          "PHPMailer error: %r" % res["error"])


def symfony(login, cmd, tok, to="to@dest.example", cc="cc@dest.example", bcc="bcc@dest.example",
            sender="app@sym.compat.example"):
    body = "Hello %s\n.leading dot\n..two dots\n.\nend\n" % tok
    res, p = php(login, "symfony.php", [cmd, sender, to, cc, bcc, "symfony " + tok, body])
    return res, body


@test("Symfony Mailer -bs")
def symfony_bs(t=None):
    """Symfony Mailer 5.4's default transport `sendmail -bs`: SMTP over the
    pipes, opened with HELO (not EHLO); dot-stuffed data comes out intact."""
    login = "vsc_sym"
    clear_argv(login)
    tok = token("symfony-bs")
    res, body = symfony(login, wrapper() + " -bs", tok)
    check(res["ok"], "Symfony: %s %s" % (res["error"], short(res["debug"])))
    eq(one_call(login), ["-bs"], "argv")
    check(res["debug"].startswith("< 220 ") and "> HELO [127.0.0.1]" in res["debug"],
          "dialogue: %r" % short(res["debug"]))
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["bcc@dest.example", "cc@dest.example", "to@dest.example"], "recipients")
    eq(m.hs("Bcc"), [], "Bcc: header on the wire")
    check(body.replace("\n", "\r\n").encode() in m.body(), "body changed: %r" % m.body())


@test("Symfony Mailer -bs")
def symfony_bs_two_messages(t=None):
    """Two messages through one transport: one `-bs` session, two transactions
    (MAIL FROM again after the first 250, no RSET), both delivered."""
    login = "vsc_sym"
    clear_argv(login)
    tok = token("symfony-two")
    cmd = ["php", Env.T + "/scripts/symfony.php", wrapper() + " -bs", "app@sym.compat.example", "to@dest.example",
           "", "", "symfony " + tok, "body " + tok + "\n"]
    p = run_as(login, cmd, env=user_env(login, {"COMPAT_COUNT": "2"}))
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    check(res["ok"], "Symfony: %s" % res["error"])
    eq(one_call(login), ["-bs"], "argv (one process for both messages)")
    eq(res["debug"].count("> MAIL FROM:<app@sym.compat.example>"), 2, "MAIL FROM commands in the session")
    ms = wait_msgs(tok, count=2)
    eq(sorted(m.h("Subject") for m in ms), ["symfony %s #1" % tok, "symfony %s #2" % tok], "subjects")
    for m in ms:
        check_identity(m, login)


@test("Laravel (Symfony -bs -i)")
def symfony_laravel_bs_i(t=None):
    """Laravel's sendmail command `sendmail -bs -i`."""
    login = "vsc_sym"
    clear_argv(login)
    tok = token("laravel")
    res, body = symfony(login, wrapper() + " -bs -i", tok, cc="", bcc="")
    check(res["ok"], "Symfony: %s" % res["error"])
    eq(one_call(login), ["-bs", "-i"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    check(body.replace("\n", "\r\n").encode() in m.body(), "body changed: %r" % m.body())


@test("Symfony Mailer -t")
def symfony_t_mode(t=None):
    """Symfony's `sendmail -t` mode drops -t and passes -f'<sender>', `--` and
    the recipients (Debian's 5.4.53; upstream before 5.4.4x had no `--`); no -i:
    it doubles leading dots itself, relying on sendmail 8 un-doubling them."""
    login = "vsc_sym"
    clear_argv(login)
    tok = token("symfony-t")
    res, body = symfony(login, wrapper() + " -t", tok)
    check(res["ok"], "Symfony: %s" % res["error"])
    eq(one_call(login), ["-fapp@sym.compat.example", "--", "to@dest.example", "cc@dest.example",
                         "bcc@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["bcc@dest.example", "cc@dest.example", "to@dest.example"], "recipients")
    check(body.replace("\n", "\r\n").encode() in m.body(), "body changed: %r" % m.body())


@test("Symfony Mailer -t")
def symfony_t_i_mode(t=None):
    """`sendmail -t -i` configured: Symfony passes -i, dots are sent as they are."""
    login = "vsc_sym"
    clear_argv(login)
    tok = token("symfony-ti")
    res, body = symfony(login, wrapper() + " -t -i", tok, cc="", bcc="")
    check(res["ok"], "Symfony: %s" % res["error"])
    eq(one_call(login), ["-i", "-fapp@sym.compat.example", "--", "to@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check(body.replace("\n", "\r\n").encode() in m.body(), "body changed: %r" % m.body())


@test("Symfony Mailer -bs")
def symfony_bs_refused(t=None):
    """-bs and a recipient the receiver refuses: the reply to the final dot is
    554 and Symfony throws with it (no bounce needed)."""
    login = "vsc_sym"
    tok = token("symfony-fail")
    res, body = symfony(login, wrapper() + " -bs", tok, to="reject-" + tok + "@dest.example", cc="", bcc="")
    check(not res["ok"], "Symfony did not throw")
    check("554" in res["error"], "Symfony's error: %r" % res["error"])
    no_msg(tok)


def git_prepare(login, tok):
    write(home(login) + "/.gitconfig", "[user]\n\tname = Dev Eloper\n\temail = dev@git.compat.example\n",
          owner=login)
    script = """set -e
cd "$HOME"; rm -rf repo patches
{git} init -q repo; cd repo
echo "hello {tok}" > file.txt
{git} add file.txt
{git} -c user.name='Dev Eloper' -c user.email=dev@git.compat.example commit -q -m 'Add file {tok}'
{git} format-patch -q -1 -o ../patches
""".format(git=GIT, tok=tok)
    p = run_as(login, ["/bin/sh", "-c", script])
    check(p.returncode == 0, "preparing the patch: %s" % short(p.stderr))
    return sorted(glob.glob(home(login) + "/patches/*.patch"))


def git_send(login, patches, extra):
    cmd = [GIT, "send-email", "--confirm=never", "--suppress-cc=all", "--no-chain-reply-to",
           "--from=Dev Eloper <dev@git.compat.example>", "--to=list@dest.example",
           "--cc=reviewer@dest.example"] + extra + patches
    return run_as(login, cmd, cwd=home(login) + "/repo")


@test("git send-email")
def git_send_email_smtpserver(t=None):
    """git send-email with sendemail.smtpServer set to the binary's path: it
    execs `sendmail -i RCPT...` (no --), and adds `-f FROM` with envelopeSender."""
    login = "vsc_git"
    clear_argv(login)
    tok = token("git")
    patches = git_prepare(login, tok)
    p = git_send(login, patches, ["--smtp-server=" + wrapper()])
    check(p.returncode == 0 and b"Result: OK" in p.stdout, "git send-email: %s" % short(p.stdout + p.stderr))
    eq(one_call(login), ["-i", "list@dest.example", "reviewer@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["list@dest.example", "reviewer@dest.example"], "recipients")
    eq(m.h("From"), "Dev Eloper <dev@git.compat.example>", "From:")
    check(("[PATCH] Add file " + tok) in (m.h("Subject") or ""), "Subject: %r" % m.h("Subject"))
    # with an envelope sender
    clear_argv(login)
    tok2 = token("git-env")
    patches = git_prepare(login, tok2)
    p = git_send(login, patches, ["--smtp-server=" + wrapper(), "--envelope-sender=auto"])
    check(p.returncode == 0, "git send-email --envelope-sender: %s" % short(p.stdout + p.stderr))
    eq(one_call(login), ["-f", "dev@git.compat.example", "-i", "list@dest.example", "reviewer@dest.example"], "argv")
    (m,) = wait_msgs(tok2)
    check_identity(m, login, mail_from="dev@git.compat.example")


@test("git send-email")
def git_send_email_sendmailcmd(t=None):
    """sendemail.sendmailCmd (git >= 2.33): run through `sh -c 'CMD "$@"'`;
    a refused recipient makes git send-email fail with vsendmail's message."""
    login = "vsc_git"
    clear_argv(login)
    tok = token("git-cmd")
    patches = git_prepare(login, tok)
    p = git_send(login, patches, ["--sendmail-cmd=" + wrapper() + " -oi"])
    check(p.returncode == 0 and b"Result: OK" in p.stdout, "git send-email: %s" % short(p.stdout + p.stderr))
    eq(one_call(login), ["-oi", "-i", "list@dest.example", "reviewer@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    tok2 = token("git-fail")
    patches = git_prepare(login, tok2)
    cmd = [GIT, "send-email", "--confirm=never", "--suppress-cc=all", "--from=dev@git.compat.example",
           "--to=reject-" + tok2 + "@dest.example", "--sendmail-cmd=" + wrapper()] + patches
    p = run_as(login, cmd, cwd=home(login) + "/repo")
    check(p.returncode != 0, "git send-email succeeded although the recipient was refused")
    check(b"vsendmail: " in p.stderr, "git send-email's stderr: %r" % short(p.stderr))


@test("mutt")
def mutt_batch(t=None):
    """mutt batch mode with `set sendmail=`: recipients on argv after --, with
    -B8BITMIME, -f (use_envelope_from), -N/-R (DSN), which reach the wire."""
    login = "vsc_mutt"
    clear_argv(login)
    tok = token("mutt")
    write(home(login) + "/.muttrc", """set sendmail="%s -oem -oi"
set from="Mutt User <mutt@mutt.compat.example>"
set use_envelope_from=yes
set use_8bitmime=yes
set dsn_notify="failure,delay"
set dsn_return=hdrs
set record=""
set charset="utf-8"
set send_charset="utf-8"
set folder="%s/Mail"
set spoolfile="%s/Mail/inbox"
""" % (wrapper(), home(login), home(login)), owner=login)
    p = run_as(login, ["mutt", "-n", "-F", home(login) + "/.muttrc", "-s", "mutt " + tok,
                       "-c", "cc@dest.example", "-b", "bcc@dest.example", "--", "to@dest.example"],
               input=("Grüße aus mutt %s\n" % tok).encode())
    check(p.returncode == 0, "mutt exited %d: %s" % (p.returncode, short(p.stderr + p.stdout)))
    eq(one_call(login), ["-oem", "-oi", "-B8BITMIME", "-f", "mutt@mutt.compat.example", "-N", "failure,delay",
                         "-R", "hdrs", "--", "to@dest.example", "cc@dest.example", "bcc@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["bcc@dest.example", "cc@dest.example", "to@dest.example"], "recipients")
    eq(m.hs("Bcc"), [], "Bcc: header on the wire")
    check("BODY=8BITMIME" in m.d["mail_params"].upper(), "MAIL FROM params: %r" % m.d["mail_params"])
    check("RET=HDRS" in m.d["mail_params"].upper(), "MAIL FROM params (DSN RET): %r" % m.d["mail_params"])
    check(all("NOTIFY=FAILURE,DELAY" in x.upper() for x in m.d["rcpt_params"]),
          "RCPT params (DSN NOTIFY): %r" % m.d["rcpt_params"])
    check("Grüße".encode() in m.body(), "8-bit body changed: %r" % m.body())


@test("bsd-mailx")
def bsd_mailx(t=None):
    """bsd-mailx (`mail`) with `set sendmail=` in ~/.mailrc: Debian's build runs
    `sendmail -i -t` (recipients from its To:/Cc: headers, none on argv)."""
    login = "vsc_mailx"
    clear_argv(login)
    tok = token("mailx")
    write(home(login) + "/.mailrc", "set sendmail=%s\n" % wrapper(), owner=login)
    p = run_as(login, ["bsd-mailx", "-s", "mailx " + tok, "-c", "cc@dest.example", "to@dest.example"],
               input=("body %s\n" % tok).encode())
    check(p.returncode == 0, "bsd-mailx exited %d: %s" % (p.returncode, short(p.stderr)))
    eq(one_call(login), ["-i", "-t"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["cc@dest.example", "to@dest.example"], "recipients")
    check((m.h("From") or "").endswith("@" + domain_of(login)) or domain_of(login) in (m.h("From") or ""),
          "From: %r" % m.h("From"))


@test("bsd-mailx")
def bsd_mailx_from(t=None):
    """bsd-mailx -r FROM: `sendmail -i -t -f FROM`."""
    login = "vsc_mailx"
    clear_argv(login)
    tok = token("mailx-r")
    write(home(login) + "/.mailrc", "set sendmail=%s\n" % wrapper(), owner=login)
    p = run_as(login, ["bsd-mailx", "-r", "alerts@mailx.compat.example", "-s", "mailx " + tok, "to@dest.example"],
               input=("body %s\n" % tok).encode())
    check(p.returncode == 0, "bsd-mailx exited %d: %s" % (p.returncode, short(p.stderr)))
    eq(one_call(login), ["-i", "-t", "-f", "alerts@mailx.compat.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login, mail_from="alerts@mailx.compat.example")


@test("s-nail")
def s_nail(t=None):
    """s-nail with mta= set: `sendmail -i [-f FROM] -- RCPT...`; it waits for
    the MTA (sendwait) and exits 4 when vsendmail fails."""
    login = "vsc_snail"
    clear_argv(login)
    tok = token("snail")
    base = ["s-nail", "-:/", "-S", "mta=" + wrapper(), "-S", "nosave", "-S", "sendwait"]
    p = run_as(login, base + ["-s", "snail " + tok, "-r", "snail@snail.compat.example",
                              "-c", "cc@dest.example", "to@dest.example"],
               input=("body %s\n" % tok).encode())
    check(p.returncode == 0, "s-nail exited %d: %s" % (p.returncode, short(p.stderr)))
    eq(one_call(login), ["-i", "-f", "snail@snail.compat.example", "--", "to@dest.example", "cc@dest.example"],
       "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(sorted(m.rcpts), ["cc@dest.example", "to@dest.example"], "recipients")
    tok2 = token("snail-fail")
    p = run_as(login, base + ["-s", "snail " + tok2, "reject-" + tok2 + "@dest.example"],
               input=("body %s\n" % tok2).encode())
    eq(p.returncode, 4, "s-nail exit code when vsendmail fails (stderr %s)" % short(p.stderr))
    check(b"vsendmail: " in p.stderr, "s-nail's stderr: %r" % short(p.stderr))


@test("Python subprocess")
def python_subprocess(t=None):
    """A Python script with subprocess (no shell): `-t -oi`, `-f S -- R`, and a
    hostile recipient starting with `-` (refused with 65). USER/LOGNAME name
    another user: the identity follows the real uid."""
    login = "vsc_py"
    tok = token("py")
    p = run_as(login, ["/usr/bin/python3", Env.T + "/scripts/subprocess_caller.py", wrapper(),
                       "py@py.compat.example", "to@dest.example", tok],
               env=user_env(login, {"USER": "vsc_php", "LOGNAME": "vsc_php"}))
    check(p.returncode == 0, "python exited %d: %s" % (p.returncode, short(p.stderr)))
    r = json.loads(p.stdout)
    eq([c["code"] for c in r], [0, 0, 65], "exit codes")
    check(r[2]["stderr"].startswith("vsendmail: "), "stderr of the refused call: %r" % r[2]["stderr"])
    m1 = wait_msgs(tok + "-1")[0]
    m2 = wait_msgs(tok + "-2")[0]
    for m in (m1, m2):
        check_identity(m, login)
        eq(m.rcpts, ["to@dest.example"], "recipients")
    eq(m1.h("From"), "Py Script <py@py.compat.example>", "From:")
    no_msg(tok + "-3", settle=0.2)


@test("Python subprocess")
def python_subprocess_no_identity(t=None):
    """A user with no virtusers line sends as the host: login@hostname, no
    source binding (127.0.0.1 towards a 127.0.0.1 receiver), HELO hostname."""
    login = NO_IDENTITY
    tok = token("py-none")
    p = run_as(login, ["/usr/bin/python3", Env.T + "/scripts/subprocess_caller.py", wrapper(),
                       "%s@%s" % (login, HOST), "to@dest.example", tok])
    check(p.returncode == 0, "python exited %d: %s" % (p.returncode, short(p.stderr)))
    r = json.loads(p.stdout)
    eq([c["code"] for c in r], [0, 0, 65], "exit codes")
    check_identity(wait_msgs(tok + "-1")[0], login)


@test("lettre (Rust)")
def lettre(t=None):
    """lettre's SendmailTransport: exec (no shell) `sendmail -i -f FROM -- TO`;
    a failure's stderr becomes lettre's error text."""
    login = "vsc_lettre"
    check(os.path.exists(Env.T + "/bin/lettre-caller"), "lettre-caller not built (%s)" % LETTRE)
    clear_argv(login)
    tok = token("lettre")
    p = run_as(login, [Env.T + "/bin/lettre-caller", wrapper(), "Rusty <lettre@lettre.compat.example>",
                       "to@dest.example", "lettre " + tok], input=("body %s\n" % tok).encode())
    check(p.returncode == 0 and b"sent" in p.stdout, "lettre-caller: %s" % short(p.stdout + p.stderr))
    eq(one_call(login), ["-i", "-f", "lettre@lettre.compat.example", "--", "to@dest.example"], "argv")
    (m,) = wait_msgs(tok)
    check_identity(m, login, mail_from="lettre@lettre.compat.example")
    tok2 = token("lettre-fail")
    p = run_as(login, [Env.T + "/bin/lettre-caller", wrapper(), "lettre@lettre.compat.example",
                       "reject-" + tok2 + "@dest.example", "lettre " + tok2], input=b"body\n")
    eq(p.returncode, 1, "lettre-caller exit code")
    check(b"vsendmail: " in p.stdout, "lettre's error does not carry vsendmail's message: %r" % short(p.stdout))


REPLAYS = [
    # name, argv, message (USER is replaced by the login), expected recipients ("USER@" = the identity's domain)
    ("cronie", ["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "USER"],
     'From: "(Cron Daemon)" <USER>\nTo: USER\nSubject: Cron <USER@host> /usr/local/bin/job TOKEN\n'
     "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
     "Auto-Submitted: auto-generated\nPrecedence: bulk\nX-Cron-Env: <SHELL=/bin/sh>\n\njob output TOKEN\n",
     ["USER@"]),
    ("vixie_cron", ["-FCronDaemon", "-odi", "-oem", "-oi", "-t"],
     "From: root (Cron Daemon)\nTo: USER\nSubject: Cron <USER@host> job TOKEN\n\noutput TOKEN\n", ["USER@"]),
    ("anacron", ["-FAnacron", "-odi", "USER"],
     "From: Anacron <USER>\nTo: USER\nSubject: Anacron job 'cron.daily' on host TOKEN\n\noutput TOKEN\n",
     ["USER@"]),
    ("systemd_cron", ["-i", "-B8BITMIME", "USER"],
     "Subject: [host] job.service failed TOKEN\n\nJournal: ü TOKEN\n", ["USER@"]),
    ("mdadm", ["-t"],
     "From: mdadm monitoring <USER>\nTo: ops@dest.example\nSubject: Fail event on /dev/md0 TOKEN\n\nmd0 TOKEN\n",
     ["ops@dest.example"]),
    ("logwatch", ["-t"],
     "To: ops@dest.example\nFrom: Logwatch\nSubject: Logwatch for host TOKEN\n\nreport TOKEN\n",
     ["ops@dest.example"]),
    ("unattended_upgrades", ["-oi", "-t"],
     "From: root\nTo: ops@dest.example\nSubject: [host] unattended-upgrades result TOKEN\n\nok TOKEN\n",
     ["ops@dest.example"]),
    ("fail2ban", ["-f", "replay@replay.compat.example", "ops@dest.example"],
     "Subject: [Fail2Ban] sshd: banned 192.0.2.66 TOKEN\nFrom: Fail2Ban <replay@replay.compat.example>\n"
     "To: ops@dest.example\n\nbanned TOKEN\n", ["ops@dest.example"]),
    ("vacation", ["-f", "replay@replay.compat.example", "--", "asker@dest.example"],
     "From: replay@replay.compat.example\nTo: asker@dest.example\nSubject: away TOKEN\n"
     "Auto-Submitted: auto-replied\n\naway TOKEN\n", ["asker@dest.example"]),
    ("grouped_and_glued", ["-ti", "-Fbob the builder", "-freplay@replay.compat.example", "x@dest.example,y@dest.example"],
     "To: ops@dest.example\nSubject: glued TOKEN\n\nglued TOKEN\n",
     ["ops@dest.example", "x@dest.example", "y@dest.example"]),
]


@test("argv replays (cronie, vixie cron, anacron, systemd-cron, mdadm, logwatch, unattended-upgrades, fail2ban, vacation)")
def argv_replays(t=None):
    """The command lines of callers not run for real here (from their sources),
    replayed as a user through the wrapper with the input they write; bare
    local names (cron's To: USER) are qualified with the identity's domain."""
    login = "vsc_replay"
    fails = []
    for name, argv, text, rcpts in REPLAYS:
        tok = token("replay-" + name)
        argv = [a.replace("USER", login) for a in argv]
        text = text.replace("USER", login).replace("TOKEN", tok)
        want = sorted(r.replace("USER@", login + "@" + domain_of(login)) for r in rcpts)
        try:
            p = run_as(login, [wrapper()] + argv, input=text.encode())
            eq(p.returncode, 0, "exit code (stderr %s)" % short(p.stderr))
            (m,) = wait_msgs(tok)
            check_identity(m, login, mail_from=m.mail_from)
            eq(sorted(m.rcpts), want, "recipients")
            for h in ("From", "To"):
                for v in m.hs(h):
                    check("@" in v, "%s: not qualified: %r" % (h, v))
            if name in ("fail2ban", "vacation", "grouped_and_glued", "cronie") :
                check(m.mail_from in ("replay@replay.compat.example", sender_of(login)), "MAIL FROM %r" % m.mail_from)
            if name == "systemd_cron":
                check("ü".encode() in m.body(), "8-bit body changed")
        except Fail as e:
            fails.append("%s: %s" % (name, e))
    check(not fails, "; ".join(fails))


# ---------------------------------------------------------------- installed roots

def ns(cmd, **kw):
    """Run cmd inside the suite's private mount namespace."""
    return run(["nsenter", "-t", str(Env.holder.pid), "-m", "--"] + cmd, **kw)


def ns_popen(cmd, **kw):
    return subprocess.Popen(["nsenter", "-t", str(Env.holder.pid), "-m", "--"] + cmd, **kw)


def holder():
    if Env.holder is None:
        Env.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "--", "sleep", "3600"])
        deadline = time.time() + 10
        me = os.readlink("/proc/self/ns/mnt")
        while time.time() < deadline:
            try:
                if os.readlink("/proc/%d/ns/mnt" % Env.holder.pid) != me:
                    break
            except OSError:
                pass
            time.sleep(0.02)
    return Env.holder


def make_root(name):
    """A throwaway root: /usr and /etc are overlays of the system's (writes go
    to upper dirs under the temp dir), /var, /run, /tmp fresh; mounted only in
    the suite's namespace. The temp dir is visible inside at the same path."""
    holder()
    base = os.path.join(Env.T, name)
    R = base + "/root"
    for d in ("up/usr", "up/etc", "work/usr", "work/etc"):
        os.makedirs(os.path.join(base, d))
    for d in ("usr", "etc", "dev", "proc", "run", "root", "home", "var/lib", "var/log", "var/cache",
              "var/spool", "var/tmp", "var/lock", "tmp"):
        os.makedirs(os.path.join(R, d))
    os.chmod(R + "/tmp", 0o1777)
    os.chmod(R + "/var/tmp", 0o1777)
    os.symlink("/run", R + "/var/run")
    for l in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        if os.path.islink("/" + l):
            os.symlink(os.readlink("/" + l), R + "/" + l)
    for d in ("usr", "etc"):
        ns(["mount", "-t", "overlay", "overlay", "-o",
            "lowerdir=/%s,upperdir=%s/up/%s,workdir=%s/work/%s" % (d, base, d, base, d), R + "/" + d])
    ns(["mount", "--bind", "/dev", R + "/dev"])
    ns(["mount", "-t", "proc", "proc", R + "/proc"])
    os.makedirs(R + Env.T)
    ns(["mount", "--bind", Env.T, R + Env.T])
    # this root's config: the suite's identities, the same receiver
    ns(["sh", "-c", "rm -f %s/etc/vsendmail.conf" % R])
    write(base + "/virtusers", virtusers_text())
    write(base + "/aliases", "")
    ns(["cp", base + "/virtusers", R + "/etc/virtusers"])
    ns(["cp", base + "/aliases", R + "/etc/aliases"])
    conf = conf_text("/var/spool/vsendmail", "/etc/virtusers", "/etc/aliases", Env.T + "/log.sock")
    write(base + "/vsendmail.conf", conf)
    ns(["cp", base + "/vsendmail.conf", R + "/etc/vsendmail.conf"])
    return R


def in_root(R, login, argv, input=b"", env=None, timeout=90):
    """Run argv chrooted in R as login (or as root with login None)."""
    pre = ["chroot", R] + (as_user(login) if login else [])
    e = env or (user_env(login) if login else {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"})
    return ns(pre + argv, input=input, timeout=timeout, check_rc=False, env=e)


class Inst:
    R = None
    error = None
    cron = None
    cron_tok = None


def other_mta(R):
    """The root's /usr/sbin/sendmail is another MTA's: the system's (Postfix,
    which the test dependencies install), or a stand-in script when the system
    has none. Returns its bytes."""
    ns(["sh", "-c", "[ -e {R}/usr/sbin/sendmail ] || [ -L {R}/usr/sbin/sendmail ] || "
        "printf '#!/bin/sh\\necho other MTA\\n' > {R}/usr/sbin/sendmail".format(R=R)])
    return ns(["cat", R + "/usr/sbin/sendmail"]).stdout


def make_in(R, target, *args, timeout=900):
    return ns(["make", "-C", ROOT, "--no-print-directory", target, "DESTDIR=" + R, "GROUP=" + INST_GROUP]
              + list(args), timeout=timeout, check_rc=False)


def installed_root():
    """The root of `make install-mta DESTDIR=R PREFIX=/usr`. Its
    /usr/sbin/sendmail is another MTA's, so the install is refused first
    (Inst.refused), then done with FORCE=1."""
    if Inst.R is None and Inst.error is None:
        try:
            R = make_root("mta")
            Inst.other = other_mta(R)
            st = lambda: ns(["stat", "-c", "%F %i %Y %s", R + "/usr/sbin/sendmail"]).stdout
            before = st()
            Inst.refused = make_in(R, "install-mta", "PREFIX=/usr")
            Inst.after_refusal = (os.path.lexists(Env.T + "/mta/up/usr/sbin/vsendmail"), st() != before,
                                  ns(["cat", R + "/usr/sbin/sendmail"]).stdout)
            p = make_in(R, "install-mta", "PREFIX=/usr", "FORCE=1")
            if p.returncode != 0:
                raise Fail("make install-mta FORCE=1 exited %d: %s" % (p.returncode, short(p.stdout + p.stderr, 1500)))
            Inst.output = (p.stdout + p.stderr).decode(errors="replace")
            Inst.R = R
        except Fail as e:
            Inst.error = str(e)
    if Inst.error:
        raise Fail("the make install-mta root could not be set up: " + Inst.error)
    return Inst.R


def cron_command(text):
    """The command of the one job line of a /etc/cron.d file (after the five
    time fields and the user)."""
    jobs = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    eq(len(jobs), 1, "job lines in the cron file")
    f = jobs[0].split(None, 6)
    eq(f[5], "root", "user of the cron line")
    return f[6]


def exec_start(text):
    lines = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("ExecStart=")]
    eq(len(lines), 1, "ExecStart= lines")
    return lines[0]


@test("make install-mta (DESTDIR)")
def install_mta_links(t=None):
    """`make install-mta DESTDIR=R PREFIX=/usr`: /usr/sbin/sendmail,
    /usr/lib/sendmail, mailq and newaliases link to vsendmail; the binary is
    set-gid to the spool's group; the spool is 2770; timer, service, cron file."""
    R = installed_root()
    up = os.path.join(Env.T, "mta/up/usr")
    for link in ("sbin/sendmail", "lib/sendmail", "bin/mailq", "bin/newaliases"):
        check(os.path.islink(os.path.join(up, link)), "/usr/%s is not an installed link" % link)
        eq(os.readlink(os.path.join(up, link)), "/usr/sbin/vsendmail", "/usr/%s points to" % link)
    st = os.stat(up + "/sbin/vsendmail")
    eq(stat.S_IMODE(st.st_mode), 0o2755, "mode of /usr/sbin/vsendmail")
    eq(st.st_gid, grp.getgrnam(INST_GROUP).gr_gid, "group of /usr/sbin/vsendmail")
    st = os.stat(R + "/var/spool/vsendmail")
    eq(stat.S_IMODE(st.st_mode), 0o2770, "mode of the spool")
    eq(st.st_gid, grp.getgrnam(INST_GROUP).gr_gid, "group of the spool")
    for f in ("lib/systemd/system/vsendmail-queue.timer", "lib/systemd/system/vsendmail-queue.service"):
        check(os.path.exists(os.path.join(up, f)), "/usr/%s not installed" % f)
    with open(up + "/lib/systemd/system/vsendmail-queue.service") as f:
        eq(exec_start(f.read()), "/usr/sbin/vsendmail -q5m", "ExecStart of vsendmail-queue.service")
    p = ns(["cat", R + "/etc/cron.d/vsendmail"], check_rc=False)
    eq(cron_command(p.stdout.decode()), "[ -x /usr/sbin/vsendmail ] && [ ! -d /run/systemd/system ] && "
       "/usr/sbin/vsendmail -q5m", "/etc/cron.d/vsendmail command")
    check(os.path.exists(up + "/share/man/man8/vsendmail.8"), "man page vsendmail.8 not installed")
    for n in ("sendmail", "mailq", "newaliases"):
        eq(os.readlink(up + "/share/man/man8/%s.8" % n), "vsendmail.8", "man page link %s.8" % n)
    # the other MTA's files were kept (FORCE=1), and the output says how to go back
    eq(ns(["cat", R + "/usr/sbin/sendmail.pre-vsendmail"]).stdout, Inst.other, "/usr/sbin/sendmail.pre-vsendmail")
    check("make uninstall" in Inst.output, "install-mta FORCE=1 does not say how to switch back: %s"
          % short(Inst.output, 1500))


@test("make install-mta over another MTA")
def install_mta_refuses_other_mta(t=None):
    """Without FORCE=1, `make install-mta` does not replace another MTA's
    /usr/sbin/sendmail (here the system's Postfix): it exits non-zero, says
    what to do (FORCE=1, uninstall) and installs nothing at all."""
    R = installed_root()
    p = Inst.refused
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode != 0, "make install-mta over another MTA's sendmail succeeded: %s" % short(out, 1500))
    check("/usr/sbin/sendmail" in out and "FORCE=1" in out and "uninstall" in out,
          "the refusal does not name the file, FORCE=1 and uninstall: %s" % short(out, 1500))
    check("install-mta: refused" in out, "refusal message: %s" % short(out, 1500))
    binary, changed, sendmail = Inst.after_refusal
    check(not binary, "the refused install-mta installed /usr/sbin/vsendmail")
    check(not changed and sendmail == Inst.other, "the refused install-mta changed /usr/sbin/sendmail")


@test("make install-mta, first send by a user")
def install_mta_fresh_spool(t=None):
    """Right after `make install-mta`, before root ever ran vsendmail, a user's
    message is accepted: the spool's subdirectories must exist (the set-gid
    binary refuses to create them for a user)."""
    R = installed_root()
    login = "vsc_inst"
    tok = token("inst-fresh")
    p = in_root(R, login, ["/usr/sbin/sendmail", "-t", "-i"],
                input=("To: to@dest.example\nSubject: first %s\n\nbody %s\n" % (tok, tok)).encode())
    eq(p.returncode, 0, "exit code (stderr %s)" % short(p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)


def check_spool_not_user_owned(R, spool, login):
    """No directory under the spool belongs to the sending user (made by the
    set-gid binary for the user, it would let the user remove or expose the
    queue, the audit trail or the rate counters). Files a user's run creates
    are the user's, as with any set-gid spool; the spool is not searchable
    for users outside the group."""
    uid = pwd.getpwnam(login).pw_uid
    p = ns(["find", R + spool, "-type", "d", "-uid", str(uid)], check_rc=False)
    eq(p.stdout.decode().strip(), "", "directories under %s owned by %s" % (spool, login))
    st = ns(["stat", "-c", "%a", R + spool]).stdout.decode().strip()
    eq(st, "2770", "mode of %s" % spool)


def installed_ready():
    """The installed root after root ran `vsendmail -q` once (which creates the
    spool's subdirectories; see install_mta_fresh_spool)."""
    R = installed_root()
    if not getattr(Inst, "ready", False):
        p = in_root(R, None, ["/usr/sbin/vsendmail", "-q"])
        check(p.returncode == 0, "vsendmail -q as root in the installed root: %s" % short(p.stdout + p.stderr))
        Inst.ready = True
    return R


@test("mdadm (/usr/lib/sendmail -t), installed")
def install_mta_usr_lib_sendmail(t=None):
    """As mdadm does: `/usr/lib/sendmail -t` in the installed root, as a user
    who is not in the spool's group (the set-gid binary writes the spool), with
    the root's /etc/vsendmail.conf (no -C)."""
    R = installed_ready()
    login = "vsc_inst"
    check(INST_GROUP not in [g.gr_name for g in grp.getgrall() if login in g.gr_mem], "user in the group")
    tok = token("inst-mdadm")
    p = in_root(R, login, ["/usr/lib/sendmail", "-t"],
                input=("From: mdadm monitoring <root>\nTo: ops@dest.example\nSubject: Fail event %s\n\n"
                       "A Fail event had been detected on md device /dev/md0. %s\n" % (tok, tok)).encode())
    eq(p.returncode, 0, "exit code (stderr %s)" % short(p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    eq(m.rcpts, ["ops@dest.example"], "recipients")
    check_spool_not_user_owned(R, "/var/spool/vsendmail", login)
    # -C is refused for a user: the binary is set-gid
    p = in_root(R, login, ["/usr/sbin/sendmail", "-C", "/tmp/other.conf", "-bv", "x@dest.example"])
    eq(p.returncode, 77, "-C as a user with the set-gid binary (stderr %s)" % short(p.stderr))


@test("PHP mail() default sendmail_path, installed")
def install_mta_php_default(t=None):
    """php-cli with PHP's built-in sendmail_path (`/usr/sbin/sendmail -t -i`)
    against the installed link."""
    R = installed_ready()
    login = "vsc_inst"
    tok = token("inst-php")
    p = in_root(R, login, ["php", "-r",
                           'var_export(mail("to@dest.example", "php default %s", "body %s\\n"));' % (tok, tok)])
    eq(p.stdout.decode(errors="replace").strip(), "true", "mail() (stderr %s)" % short(p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)


@test("mailq / newaliases links, installed")
def install_mta_mailq_newaliases(t=None):
    """argv[0] mailq lists the queue (-bp), newaliases checks (-bi)."""
    R = installed_ready()
    p = in_root(R, "vsc_inst", ["/usr/bin/mailq"])
    eq(p.returncode, 0, "mailq exit code (stderr %s)" % short(p.stderr))
    check(b"Mail queue is empty" in p.stdout, "mailq output: %r" % short(p.stdout))
    p = in_root(R, None, ["/usr/bin/newaliases"])
    eq(p.returncode, 0, "newaliases exit code (%s)" % short(p.stdout + p.stderr))


class Local:
    R = None
    error = None


def local_root():
    """The root of a plain `make install DESTDIR=R`: the default PREFIX
    (/usr/local), so /usr/sbin/sendmail there stays the other MTA's."""
    if Local.R is None and Local.error is None:
        try:
            R = make_root("local")
            Local.other = other_mta(R)
            p = make_in(R, "install")
            if p.returncode != 0:
                raise Fail("make install exited %d: %s" % (p.returncode, short(p.stdout + p.stderr, 1500)))
            Local.R = R
        except Fail as e:
            Local.error = str(e)
    if Local.error:
        raise Fail("the make install root could not be set up: " + Local.error)
    return Local.R


def queued_in(R, login, tok):
    """A message queued (-odq, not tried) by login in root R."""
    p = in_root(R, login, ["/usr/local/sbin/vsendmail", "-odq", "-t", "-i"],
                input=("To: to@dest.example\nSubject: queued %s\n\nbody %s\n" % (tok, tok)).encode())
    eq(p.returncode, 0, "-odq exit code (stderr %s)" % short(p.stderr))
    no_msg(tok, settle=0.5)


@test("queue runners of make install (PREFIX /usr/local)")
def install_queue_runners(t=None):
    """After a plain `make install` (PREFIX /usr/local; /usr/sbin/sendmail is
    still the other MTA's) the timer's service and the cron line run the
    installed /usr/local/sbin/vsendmail -q5m, and retry deferred mail for
    real: a queued message is delivered by the cron line's command (run as
    cron runs it, /bin/sh -c) and by the service's ExecStart. Where systemd
    runs (/run/systemd/system exists) the cron line does nothing."""
    R = local_root()
    up = os.path.join(Env.T, "local/up/usr")
    with open(up + "/local/lib/systemd/system/vsendmail-queue.service") as f:
        cmd_unit = exec_start(f.read())
    eq(cmd_unit, "/usr/local/sbin/vsendmail -q5m", "ExecStart of vsendmail-queue.service")
    check(os.path.exists(up + "/local/lib/systemd/system/vsendmail-queue.timer"), "no vsendmail-queue.timer")
    cmd_cron = cron_command(ns(["cat", R + "/etc/cron.d/vsendmail"]).stdout.decode())
    check("/usr/sbin/sendmail" not in cmd_cron, "the cron line runs /usr/sbin/sendmail: %r" % cmd_cron)
    check("/run/systemd/system" in cmd_cron, "the cron line is not guarded for systemd: %r" % cmd_cron)
    login = "vsc_inst"
    # 1. no systemd in the root: the cron line runs the queue
    tok = token("cron-line")
    queued_in(R, login, tok)
    p = in_root(R, None, ["/bin/sh", "-c", cmd_cron])
    eq(p.returncode, 0, "the cron line's command (%s)" % short(p.stdout + p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    # 2. systemd runs: the cron line leaves the work to the timer
    tok = token("cron-systemd")
    queued_in(R, login, tok)
    ns(["mkdir", "-p", R + "/run/systemd/system"])
    try:
        in_root(R, None, ["/bin/sh", "-c", cmd_cron])
        no_msg(tok, settle=1.0)
    finally:
        ns(["rm", "-rf", R + "/run/systemd"])
    # 3. the timer's service delivers it
    p = in_root(R, None, cmd_unit.split())
    eq(p.returncode, 0, "ExecStart (%s)" % short(p.stdout + p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)


@test("make install examples")
def install_examples(t=None):
    """make install puts the examples (vsendmail.conf, virtusers, aliases, the
    nftables rules) under PREFIX/share/doc/vsendmail/examples, never into
    /etc: the root's own /etc/vsendmail.conf is left as it was."""
    R = local_root()
    ex = os.path.join(Env.T, "local/up/usr/local/share/doc/vsendmail/examples")
    for f in ("vsendmail.conf", "virtusers", "aliases", "nftables.conf", "nftables.md"):
        src = os.path.join(ROOT, "dist/examples", f) if f in ("vsendmail.conf", "virtusers", "aliases") \
            else os.path.join(ROOT, "dist", f)
        with open(src, "rb") as a, open(os.path.join(ex, f), "rb") as b:
            eq(b.read(), a.read(), "installed example %s" % f)
    with open(Env.T + "/local/vsendmail.conf", "rb") as f:
        eq(ns(["cat", R + "/etc/vsendmail.conf"]).stdout, f.read(), "/etc/vsendmail.conf after make install")
    for f in ("virtusers", "aliases"):
        with open(Env.T + "/local/" + f, "rb") as g:
            eq(ns(["cat", R + "/etc/" + f]).stdout, g.read(), "/etc/%s after make install" % f)


@test("make uninstall")
def install_uninstall(t=None):
    """`make install-mta FORCE=1` over the root of `make install` (the other
    MTA's sendmail kept as .pre-vsendmail), then `make uninstall`: the other
    MTA's /usr/sbin/sendmail and links are back, every installed file is gone,
    the spool with its audit trail stays and the output says where."""
    R = local_root()
    p = make_in(R, "install-mta", "FORCE=1")
    eq(p.returncode, 0, "make install-mta FORCE=1 (%s)" % short(p.stdout + p.stderr, 1500))
    eq(ns(["readlink", R + "/usr/sbin/sendmail"]).stdout.decode().strip(), "/usr/local/sbin/vsendmail",
       "/usr/sbin/sendmail after install-mta")
    # a send leaves an audit record, which uninstall must keep
    tok = token("uninstall")
    p = in_root(R, "vsc_inst", ["/usr/sbin/sendmail", "-t", "-i"],
                input=("To: to@dest.example\nSubject: before uninstall %s\n\nbody\n" % tok).encode())
    eq(p.returncode, 0, "send (stderr %s)" % short(p.stderr))
    wait_msgs(tok)
    p = make_in(R, "uninstall")
    out = (p.stdout + p.stderr).decode(errors="replace")
    eq(p.returncode, 0, "make uninstall (%s)" % short(out, 1500))
    eq(ns(["cat", R + "/usr/sbin/sendmail"]).stdout, Local.other, "/usr/sbin/sendmail after uninstall")
    for l in ("/usr/sbin/sendmail", "/usr/lib/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases"):
        q = ns(["sh", "-c", "readlink %s%s || true" % (R, l)]).stdout.decode().strip()
        check("vsendmail" not in q, "%s still points to %s" % (l, q))
    left = ns(["sh", "-c", "cd %s && ls -d usr/local/sbin/vsendmail usr/local/share/man/man8/*.8 "
               "usr/local/share/man/man5/*.5 usr/local/lib/systemd/system/vsendmail* etc/cron.d/vsendmail "
               "usr/local/share/doc/vsendmail usr/sbin/*.pre-vsendmail usr/lib/*.pre-vsendmail "
               "usr/bin/*.pre-vsendmail 2>/dev/null; true" % R]).stdout.decode().split()
    eq(left, [], "files left after make uninstall")
    audit = ns(["sh", "-c", "cat %s/var/spool/vsendmail/audit/*.jsonl" % R], check_rc=False).stdout
    check(tok.encode() in audit or b"vsc_inst" in audit, "the audit trail did not survive make uninstall")
    check("/var/spool/vsendmail/audit" in out, "make uninstall does not say where the audit trail is: %s"
          % short(out, 1500))


def man_conf_keys():
    """The keys vsendmail.conf(5) documents: `.BR key " (...` items of KEYS."""
    with open(os.path.join(ROOT, "man/vsendmail.conf.5")) as f:
        text = f.read()
    keys_part = text.split("\n.SH KEYS\n", 1)[1].split("\n.SH ", 1)[0]
    import re
    keys = re.findall(r'^\.BR ([a-z_]+) " \(', keys_part, re.M)
    check(len(keys) > 30, "read only %d keys from man/vsendmail.conf.5" % len(keys))
    return keys


def man_virtusers_options():
    with open(os.path.join(ROOT, "man/virtusers.5")) as f:
        text = f.read()
    opts_part = text.split("\n.SS Options\n", 1)[1].split("\n.SH ", 1)[0]
    import re
    opts = re.findall(r'^\.TP\n\.BI ([a-z_]+)= ', opts_part, re.M)
    check(len(opts) >= 6, "read only %d options from man/virtusers.5" % len(opts))
    return opts


def uncomment(text, pattern):
    import re
    return "\n".join(re.sub(pattern, r"\1", l) for l in text.splitlines()) + "\n"


@test("dist/examples")
def dist_examples(t=None):
    """Every key of vsendmail.conf(5) is in dist/examples/vsendmail.conf (as
    `# key = ...`) and every option of virtusers(5) in an identity line of
    dist/examples/virtusers; uncommented, the examples (config, virtusers with
    keys made for it, aliases) pass `vsendmail -bi`, so no example line is
    misspelt."""
    import re
    with open(os.path.join(ROOT, "dist/examples/vsendmail.conf")) as f:
        conf = f.read()
    with open(os.path.join(ROOT, "dist/examples/virtusers")) as f:
        vu = f.read()
    with open(os.path.join(ROOT, "dist/examples/aliases")) as f:
        al = f.read()
    present = set(re.findall(r"^# ([a-z_]+) = ", conf, re.M))
    missing = [k for k in man_conf_keys() if k not in present]
    eq(missing, [], "keys of man/vsendmail.conf.5 missing in dist/examples/vsendmail.conf")
    check(re.search(r"^# \[timeouts\]$", conf, re.M), "no [timeouts] table in the example")
    # identity lines: "# LOGIN SENDER SOURCE [OPTIONS]"
    ident = re.compile(r"^# ?((?:[a-z][a-z0-9_-]*|%[a-z][a-z0-9_-]*|\*) +(?:\S*@\S+) +\S+(?: +\S+=\S+)*)$")
    lines = [m.group(1) for m in map(ident.match, vu.splitlines()) if m]
    check(len(lines) >= 4, "identity lines in dist/examples/virtusers: %r" % lines)
    used = set(re.findall(r" ([a-z_]+)=", " ".join(lines)))
    missing = [o for o in man_virtusers_options() if o not in used]
    eq(missing, [], "options of man/virtusers.5 missing in the lines of dist/examples/virtusers")
    # uncommented, with the key files the lines name made in a temp dir
    d = os.path.join(Env.T, "examples")
    # as make install leaves them: the spool root:GROUP 2770 with its
    # directories, the keys and secrets readable by the group only
    gid = grp.getgrnam(INST_GROUP).gr_gid
    for sub in ("", "/tmp", "/queue", "/rate", "/audit", "/oauth2", "/breaker", "/suspended", "/backoff", "/mta-sts"):
        os.makedirs(d + "/spool" + sub)
        os.chown(d + "/spool" + sub, 0, gid)
        os.chmod(d + "/spool" + sub, 0o2770)
    body = "\n".join(lines) + "\n"
    for path in sorted(set(re.findall(r"(?:dkim=[^:\s]+:|batv=)(\S+)", body))):
        local = d + "/keys/" + os.path.basename(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        if "dkim" in path:
            run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", local])
        else:
            write(local, "1 %s\n" % os.urandom(16).hex(), 0o600)
        os.chown(local, 0, gid)
        os.chmod(local, 0o640)
        body = body.replace(path, local)
    write(d + "/virtusers", body)
    write(d + "/aliases", uncomment(al, r"^# ?([a-z-]+: +\S+@?\S*)$"))
    c = uncomment(conf, r"^# ?(\[timeouts\]|\[breaker\]|[a-z_]+ = .*)$")
    # the relay user of the %hosting line has its secrets line
    write(d + "/secrets", "relay.example.net:465 hosting example-password\n", 0o640)
    os.chown(d + "/secrets", 0, gid)
    c = re.sub(r'^(virtusers|aliases|spool|audit_dir|syslog_socket|secrets) = .*$', "", c, flags=re.M)
    c = ('virtusers = "%s/virtusers"\naliases = "%s/aliases"\nspool = "%s/spool"\nsyslog_socket = "%s"\n'
         'secrets = "%s/secrets"\n' % (d, d, d, Env.T + "/log.sock", d)) + c
    write(d + "/vsendmail.conf", c)
    p = run([BIN, "-C", d + "/vsendmail.conf", "-bi"], check_rc=False)
    out = (p.stdout + p.stderr).decode(errors="replace")
    eq(p.returncode, 0, "vsendmail -bi on the uncommented examples (%s)" % short(out, 1500))
    check("warning:" not in out, "vsendmail -bi warns about the examples: %s" % short(out, 1500))


LOGGER = """#!/bin/bash
# compat suite: records argv (as the wrapper does), then runs the installed binary.
f=$(mktemp "{argv}/call.XXXXXXXX" 2>/dev/null) && printf '%s\\0' "$@" > "$f"
exec -a "$0" /usr/sbin/vsendmail "$@"
"""


@test("Debian cron (real daemon), start")
def cron_debian_start(t=None):
    """Start Debian's cron daemon in the installed root with crontabs for two
    users: one with MAILTO, one without (mail to the bare login). The mails
    are checked at the end of the suite (cron runs jobs at the next minute)."""
    R = installed_ready()
    # argv logger in front of the installed binary (the link was checked above)
    write(Env.T + "/mta/sendmail-logger", LOGGER.format(argv=Env.T + "/argv"), 0o755)
    ns(["sh", "-c", "rm -f {R}/usr/sbin/sendmail && cp {T}/mta/sendmail-logger {R}/usr/sbin/sendmail && "
        "rm -rf {R}/etc/cron.d/* {R}/etc/crontab {R}/etc/cron.hourly {R}/etc/cron.daily && "
        "sed -i '/pam_loginuid/d' {R}/etc/pam.d/cron".format(R=R, T=Env.T)])
    tok = Inst.cron_tok = token("cron")
    crontabs = R + "/var/spool/cron/crontabs"
    os.makedirs(crontabs)
    os.chmod(crontabs, 0o1730)
    # one run only: the minute that starts 5 to 65 seconds from now (the
    # root's /etc/localtime is the system's, so is cron's clock)
    at = time.localtime(time.time() + 65)
    when = "%d %d * * *" % (at.tm_min, at.tm_hour)
    for login, mailto in (("vsc_cron", "MAILTO=cron-watch@dest.example\n"), ("vsc_cron2", "")):
        write(crontabs + "/" + login, "# compat suite\nSHELL=/bin/sh\n%s%s echo 'job output %s %s ü'\n"
              % (mailto, when, login, tok), 0o600, owner=login)
    Inst.cron = ns_popen(["chroot", R, "/usr/sbin/cron", "-f", "-L", "15"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={"PATH": PATH, "LANG": "C.UTF-8"})
    time.sleep(0.5)
    if Inst.cron.poll() is not None:
        raise Fail("cron exited at once: %s" % short(Inst.cron.stdout.read()))


@test("Debian cron (real daemon)")
def cron_debian(t=None):
    """The job's output mailed by cron as the job's owner, through the
    installed /usr/sbin/sendmail: identity of the owner, Debian cron's argv
    `-FCronDaemon -i -B8BITMIME -oem MAILTO`, From: qualified."""
    check(Inst.cron is not None, "cron was not started")
    tok = Inst.cron_tok
    try:
        msgs = wait_msgs(tok, count=2, timeout=150)
    finally:
        Inst.cron.terminate()
        try:
            out = Inst.cron.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            Inst.cron.kill()
            out = b""
    by = {}
    for m in msgs:
        by[m.peer] = m
    m1, m2 = by.get(IDENT["vsc_cron"][1]), by.get(IDENT["vsc_cron2"][1])
    check(m1 and m2, "cron mails by peer: %r (cron said %s)" % (msgs, short(out)))
    check_identity(m1, "vsc_cron")
    eq(m1.rcpts, ["cron-watch@dest.example"], "recipients (MAILTO)")
    check_identity(m2, "vsc_cron2")
    eq(m2.rcpts, ["vsc_cron2@cron2.compat.example"], "recipients (no MAILTO: the owner's bare login)")
    for m in (m1, m2):
        check(m.h("Subject", ) and m.h("Subject").startswith("Cron <"), "Subject: %r" % m.h("Subject"))
        check("@" in (m.h("From") or "") and "Cron Daemon" in m.h("From"), "From: %r" % m.h("From"))
        check("ü".encode() in m.body(), "8-bit job output changed: %r" % m.body())
    eq(argv_calls("vsc_cron"), [["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "cron-watch@dest.example"]], "argv")
    eq(argv_calls("vsc_cron2"), [["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "vsc_cron2"]], "argv (no MAILTO)")


class Deb:
    path = None
    R = None
    parent_before = None


def beside_tree():
    """What dpkg-buildpackage would leave in the tree's parent directory."""
    parent = os.path.dirname(ROOT)
    return sorted(f for f in os.listdir(parent) if f.startswith("vsendmail_"))


def deb_path():
    if Deb.path is None:
        p = os.environ.get("DEB")
        if not p:
            Deb.parent_before = beside_tree()
            r = run(["bash", os.path.join(ROOT, "dist", "build-deb.sh"), "--no-lint"], timeout=900, check_rc=False)
            if r.returncode != 0:
                raise Fail("dist/build-deb.sh exited %d: %s" % (r.returncode, short(r.stdout + r.stderr, 2000)))
            p = r.stdout.decode().strip().splitlines()[-1]
        check(os.path.exists(p), "no .deb at %s" % p)
        Deb.path = os.path.abspath(p)
    return Deb.path


@test("Debian source package and lintian")
def deb_source_lintian(t=None):
    """dist/build-deb.sh builds as a packager does (dpkg-buildpackage -us -uc:
    source and binary): the .dsc and the native tarball unpack again with
    dpkg-source -x, nothing is left beside the tree, and lintian
    (dist/lint-deb.sh, over the .changes: source, binary, buildinfo) finds no
    error; its warnings are printed here."""
    deb = deb_path()
    d = os.path.dirname(deb)
    base = os.path.basename(deb).rsplit("_", 1)[0]          # vsendmail_VERSION
    changes = deb[:-len(".deb")] + ".changes"
    for f in (base + ".dsc", base + ".tar.xz", os.path.basename(changes)):
        check(os.path.exists(os.path.join(d, f)), "no %s beside %s" % (f, deb))
    version = base.split("_", 1)[1]
    check("-" not in version, "a native package's version has no Debian revision: %s" % version)
    x = os.path.join(Env.T, "deb-source")
    r = run(["dpkg-source", "-x", os.path.join(d, base + ".dsc"), x], check_rc=False)
    eq(r.returncode, 0, "dpkg-source -x (%s)" % short(r.stdout + r.stderr))
    for f in ("Cargo.toml", "src/main.rs", "debian/rules", "Makefile", "dist/cron.d/vsendmail.in"):
        check(os.path.exists(os.path.join(x, f)), "the source package lacks %s" % f)
    check(not os.path.exists(os.path.join(x, "target")), "the source package holds target/")
    if Deb.parent_before is not None:
        eq(beside_tree(), Deb.parent_before, "files dpkg-buildpackage left in %s" % os.path.dirname(ROOT))
    r = run(["bash", os.path.join(ROOT, "dist", "lint-deb.sh"), changes], timeout=600, check_rc=False)
    out = (r.stdout + r.stderr).decode(errors="replace")
    for line in out.splitlines():
        if line.startswith(("W: ", "E: ")):
            print("      lintian %s" % line, flush=True)
    eq(r.returncode, 0, "dist/lint-deb.sh: %s" % short(out, 2000))


@test("Debian package: build and metadata")
def deb_metadata(t=None):
    """The .deb provides mail-transport-agent, conflicts with and replaces the
    other MTAs, and ships the binary, the links, the units and the cron file."""
    deb = deb_path()
    f = lambda field: run(["dpkg-deb", "-f", deb, field]).stdout.decode().strip()
    eq(f("Package"), "vsendmail", "Package")
    check("mail-transport-agent" in f("Provides"), "Provides: %r" % f("Provides"))
    conflicts = [c.strip() for c in f("Conflicts").split(",")]
    replaces = [c.strip() for c in f("Replaces").split(",")]
    for mta in ("mail-transport-agent", "postfix", "exim4-daemon-light", "exim4-daemon-heavy", "sendmail-bin",
                "msmtp-mta", "nullmailer", "dma", "opensmtpd", "ssmtp"):
        check(mta in conflicts, "Conflicts lacks %s" % mta)
        check(mta in replaces, "Replaces lacks %s" % mta)
    contents = run(["dpkg-deb", "-c", deb]).stdout.decode()
    for want in ("./usr/sbin/vsendmail", "./usr/sbin/sendmail -> ", "./usr/lib/sendmail -> ", "./usr/bin/mailq -> ",
                 "./usr/bin/newaliases -> ", "vsendmail-queue.timer", "vsendmail-queue.service",
                 "./etc/cron.d/vsendmail", "./var/spool/vsendmail/", "vsendmail.8",
                 "./usr/share/man/man8/sendmail.8.gz -> vsendmail.8.gz", "./usr/share/man/man8/mailq.8.gz -> ",
                 "./usr/share/man/man8/newaliases.8.gz -> ",
                 "./usr/share/doc/vsendmail/examples/vsendmail.conf", "./usr/share/doc/vsendmail/examples/virtusers",
                 "./usr/share/doc/vsendmail/examples/nftables.conf"):
        check(want in contents, "the package lacks %s" % want)
    check("rwsr" not in contents and "rwxr-sr" not in contents, "set-id bits inside the archive")
    check("./etc/vsendmail.conf" not in contents and "./etc/virtusers" not in contents,
          "the package ships /etc/vsendmail.conf or /etc/virtusers (examples belong in /usr/share/doc)")
    check("ca-certificates" in f("Recommends"), "Recommends: %r" % f("Recommends"))
    x = os.path.join(Env.T, "deb-x")
    run(["dpkg-deb", "-x", deb, x])
    with open(x + "/etc/cron.d/vsendmail") as fh:
        eq(cron_command(fh.read()), "[ -x /usr/sbin/vsendmail ] && [ ! -d /run/systemd/system ] && "
           "/usr/sbin/vsendmail -q5m", "the package's cron line")
    with open(x + "/lib/systemd/system/vsendmail-queue.service") as fh:
        eq(exec_start(fh.read()), "/usr/sbin/vsendmail -q5m", "the package's ExecStart")


def deb_root():
    if Deb.R is None:
        deb = deb_path()
        R = make_root("deb")
        dpkgdir = R + "/var/lib/dpkg"
        for d in ("info", "updates", "triggers", "alternatives"):
            os.makedirs(os.path.join(dpkgdir, d))
        write(dpkgdir + "/status", "")
        write(dpkgdir + "/available", "")
        Deb.R = R
    return Deb.R


def dpkg_root(R, args):
    env = {"PATH": PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return ns(["dpkg", "--root=" + R, "--force-depends", "--force-unsafe-io"] + args, env=env,
              timeout=300, check_rc=False)


def deb_installed():
    """The package installed with dpkg --root into a root whose dpkg database
    says postfix (a stand-in entry) is installed."""
    R = deb_root()
    if getattr(Deb, "install", None) is None:
        write(R + "/var/lib/dpkg/status",
              "Package: postfix\nStatus: install ok installed\nPriority: optional\nSection: mail\n"
              "Maintainer: nobody <nobody@example.org>\nArchitecture: amd64\nVersion: 3.7.11-0+deb12u1\n"
              "Provides: mail-transport-agent\nDescription: stand-in entry of the compat suite\n\n")
        Deb.install = dpkg_root(R, ["-i", deb_path()])
    p = Deb.install
    eq(p.returncode, 0, "dpkg -i exit code (%s)" % short(p.stdout + p.stderr, 1500))
    return R, p


@test("Debian package: conflicts")
def deb_conflicts(t=None):
    """Installed where another MTA (postfix) is: dpkg removes it in favour of
    vsendmail (Conflicts + Replaces), as apt does when switching MTAs."""
    R, p = deb_installed()
    out = (p.stdout + p.stderr).decode(errors="replace")
    check("will remove postfix in favour of vsendmail" in out, "dpkg: %s" % short(out, 1500))
    q = ns(["dpkg-query", "--admindir=" + R + "/var/lib/dpkg", "-W", "-f=${Package} ${Status}\\n"],
           check_rc=False).stdout.decode()
    check("postfix install ok installed" not in q, "postfix still installed: %r" % q)
    check("vsendmail install ok installed" in q, "vsendmail not installed: %r" % q)


@test("Debian package: install into a throwaway root, send")
def deb_install(t=None):
    """`dpkg --root` installs the package (maintainer scripts run chrooted):
    group vsendmail created, binary 2755 root:vsendmail and spool 2770 by
    dpkg-statoverride; a user outside the group sends through /usr/sbin/sendmail
    at once; purge removes the binary, the links, the overrides and the queue
    (a message still queued included), keeps the audit trail and says where it is."""
    R, p = deb_installed()
    g = ns(["chroot", R, "getent", "group", "vsendmail"], check_rc=False).stdout.decode().strip()
    check(g.startswith("vsendmail:"), "no group vsendmail in the root")
    gid = int(g.split(":")[2])
    st = ns(["stat", "-c", "%a %U %g", R + "/usr/sbin/vsendmail"]).stdout.decode().split()
    eq(st, ["2755", "root", str(gid)], "mode, owner, group of /usr/sbin/vsendmail")
    for d in ("", "/tmp", "/queue"):
        st = ns(["stat", "-c", "%a %U %g", R + "/var/spool/vsendmail" + d]).stdout.decode().split()
        eq(st, ["2770", "root", str(gid)], "mode, owner, group of the spool%s" % d)
    so = ns(["chroot", R, "dpkg-statoverride", "--list"], check_rc=False).stdout.decode()
    check("/usr/sbin/vsendmail" in so and "/var/spool/vsendmail" in so, "statoverrides: %r" % so)
    eq(ns(["readlink", R + "/usr/sbin/sendmail"]).stdout.decode().strip(), "vsendmail", "/usr/sbin/sendmail link")
    # a user outside the group sends as its identity, right after the install
    login = "vsc_deb"
    tok = token("deb")
    p = in_root(R, login, ["/usr/sbin/sendmail", "-t", "-i"],
                input=("To: to@dest.example\nSubject: from the package %s\n\nbody %s\n" % (tok, tok)).encode())
    eq(p.returncode, 0, "sendmail exit code (stderr %s)" % short(p.stderr))
    (m,) = wait_msgs(tok)
    check_identity(m, login)
    check_spool_not_user_owned(R, "/var/spool/vsendmail", login)
    audit = ns(["sh", "-c", "cat %s/var/spool/vsendmail/audit/*.jsonl" % R], check_rc=False).stdout
    check(b"user=vsc_deb" in audit or b'"vsc_deb"' in audit, "no audit record of the send: %r" % short(audit))
    # a message still queued at purge time
    p = in_root(R, login, ["/usr/sbin/sendmail", "-odq", "-t", "-i"],
                input=b"To: to@dest.example\nSubject: queued at purge\n\nbody\n")
    eq(p.returncode, 0, "-odq exit code (stderr %s)" % short(p.stderr))
    # purge: the links, the overrides, the queue go; the audit trail stays, and dpkg's output says where
    p = dpkg_root(R, ["--purge", "vsendmail"])
    out = (p.stdout + p.stderr).decode(errors="replace")
    eq(p.returncode, 0, "dpkg --purge exit code (%s)" % short(out, 1500))
    so = ns(["chroot", R, "dpkg-statoverride", "--list"], check_rc=False).stdout.decode()
    check("vsendmail" not in so, "statoverrides left after purge: %r" % so)
    left = ns(["sh", "-c", "ls -d %s/usr/sbin/vsendmail %s/usr/lib/sendmail %s/var/spool/vsendmail/queue "
               "%s/var/spool/vsendmail/tmp %s/var/spool/vsendmail/rate 2>/dev/null; true"
               % (R, R, R, R, R)]).stdout.decode().strip()
    eq(left, "", "files left after purge")
    eq(ns(["sh", "-c", "cat %s/var/spool/vsendmail/audit/*.jsonl" % R], check_rc=False).stdout, audit,
       "the audit trail after purge")
    check("/var/spool/vsendmail/audit" in out, "purge does not say where the audit trail is: %s" % short(out, 1500))


# ---------------------------------------------------------------- main

ORDER_FIRST = ["install_mta_links", "install_mta_refuses_other_mta", "install_mta_fresh_spool", "install_mta_usr_lib_sendmail", "install_mta_php_default",
               "install_mta_mailq_newaliases", "cron_debian_start"]
ORDER_LAST = ["cron_debian"]


def main():
    if os.geteuid() != 0:
        print("compat: must run as root (it creates throwaway users and mount namespaces)", file=sys.stderr)
        return 77
    only = sys.argv[1:]
    byname = {n: (c, f) for n, c, f in TESTS}
    names = [n for n in ORDER_FIRST] + [n for n, _, _ in TESTS if n not in ORDER_FIRST + ORDER_LAST] + ORDER_LAST
    if only:
        names = [n for n in names if any(o in n for o in only)]
        if "cron_debian" in names and "cron_debian_start" not in names:
            names.insert(0, "cron_debian_start")
    passed, failed = 0, 0
    # one suite at a time on a machine: the throwaway users have fixed names
    lock = open("/tmp/vsc-compat.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    t0 = time.time()
    try:
        setup()
        for n in names:
            caller, f = byname[n]
            t1 = time.time()
            try:
                f()
                passed += 1
                print("ok    %-34s %-28s (%.1fs)" % (n, caller[:28], time.time() - t1), flush=True)
            except Fail as e:
                failed += 1
                print("FAIL  %-34s %s: %s" % (n, caller, e), flush=True)
            except Exception as e:  # a broken test is a failure too
                failed += 1
                print("FAIL  %-34s %s: %s: %s" % (n, caller, type(e).__name__, e), flush=True)
                traceback.print_exc(limit=3)
    finally:
        teardown()
    print("compat: %.0fs" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
