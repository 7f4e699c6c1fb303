#!/usr/bin/python3
"""compat/sink.py — the receiver of the compat suite: a loopback SMTP server
that records everything it sees, plus a syslog socket.

Usage: sink.py OUTDIR [--syslog PATH]

Listens on 127.0.0.1 on a free port and prints `listening PORT` on its first
line of stdout. For each accepted message it writes OUTDIR/msg-N.json with the
peer address and port, the greeting command and name (HELO/EHLO), MAIL FROM
and its parameters, the recipients and the raw data (dot-unstuffed; text
decoded as UTF-8 with surrogate escapes, and base64 for an exact copy). Every
connection is appended to OUTDIR/connections.jsonl when it closes. Datagrams
received on the syslog socket go to OUTDIR/syslog.jsonl.

What it answers depends on the recipient's local part: `reject...` gets
`550 5.1.1`, `tempfail...` gets `451 4.2.0`; everything else is accepted.
It stops on SIGTERM or when its stdin closes.
"""

import base64
import json
import os
import socket
import socketserver
import sys
import threading

OUT = sys.argv[1]
LOCK = threading.Lock()
COUNTER = [0]


def write_json(name, obj, append=False):
    path = os.path.join(OUT, name)
    with LOCK:
        if append:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(obj) + "\n")
        else:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(obj, f, indent=1)
            os.rename(tmp, path)


def next_id():
    with LOCK:
        COUNTER[0] += 1
        return COUNTER[0]


class Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def say(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        peer = self.client_address
        conn = {"peer": peer[0], "peer_port": peer[1], "helo_cmd": None, "helo": None,
                "commands": [], "messages": 0}
        tx = None
        self.say("220 sink.compat.example ESMTP compat sink")
        try:
            while True:
                raw = self.rfile.readline(65536)
                if not raw:
                    break
                line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
                conn["commands"].append(line)
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "HELO"):
                    conn["helo_cmd"], conn["helo"] = verb, arg.strip()
                    tx = None
                    if verb == "EHLO":
                        for ext in ("sink.compat.example", "PIPELINING", "SIZE 100000000",
                                    "8BITMIME", "SMTPUTF8", "DSN"):
                            self.say("250-" + ext)
                        self.say("250 ENHANCEDSTATUSCODES")
                    else:
                        self.say("250 sink.compat.example")
                elif verb == "MAIL":
                    a = arg[5:] if arg.upper().startswith("FROM:") else arg
                    a = a.strip()
                    addr, params = a, ""
                    if a.startswith("<") and ">" in a:
                        addr, params = a[1:a.index(">")], a[a.index(">") + 1:].strip()
                    tx = {"mail_from": addr, "mail_params": params, "rcpts": [], "rcpt_params": []}
                    self.say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    if tx is None:
                        self.say("503 5.5.1 need MAIL")
                        continue
                    a = arg[3:] if arg.upper().startswith("TO:") else arg
                    a = a.strip()
                    addr, params = a, ""
                    if a.startswith("<") and ">" in a:
                        addr, params = a[1:a.index(">")], a[a.index(">") + 1:].strip()
                    local = addr.split("@")[0].lower()
                    if local.startswith("reject"):
                        self.say("550 5.1.1 <%s>: Recipient address rejected: no such user" % addr)
                    elif local.startswith("tempfail"):
                        self.say("451 4.2.0 <%s>: try again later" % addr)
                    else:
                        tx["rcpts"].append(addr)
                        tx["rcpt_params"].append(params)
                        self.say("250 2.1.5 Ok")
                elif verb == "DATA":
                    if tx is None or not tx["rcpts"]:
                        self.say("554 5.5.1 no valid recipients")
                        continue
                    self.say("354 End data with <CR><LF>.<CR><LF>")
                    data = bytearray()
                    while True:
                        l = self.rfile.readline(1 << 20)
                        if not l:
                            return
                        if l in (b".\r\n", b".\n"):
                            break
                        if l.startswith(b"."):
                            l = l[1:]
                        data += l
                    n = next_id()
                    msg = dict(tx)
                    msg.update({"n": n, "peer": peer[0], "peer_port": peer[1],
                                "helo_cmd": conn["helo_cmd"], "helo": conn["helo"],
                                "data": bytes(data).decode("utf-8", "surrogateescape"),
                                "data_b64": base64.b64encode(bytes(data)).decode()})
                    write_json("msg-%04d.json" % n, msg)
                    conn["messages"] += 1
                    tx = None
                    self.say("250 2.0.0 Ok: queued as SINK%04d" % n)
                elif verb == "RSET":
                    tx = None
                    self.say("250 2.0.0 Ok")
                elif verb == "NOOP":
                    self.say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    self.say("221 2.0.0 Bye")
                    break
                else:
                    self.say("502 5.5.2 command not recognized")
        except (ConnectionError, socket.timeout):
            pass
        finally:
            write_json("connections.jsonl", conn, append=True)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def syslog_reader(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)
    while True:
        d = s.recv(65536)
        write_json("syslog.jsonl", {"line": d.decode("utf-8", "replace").rstrip("\n\0")}, append=True)


def main():
    if "--syslog" in sys.argv:
        path = sys.argv[sys.argv.index("--syslog") + 1]
        threading.Thread(target=syslog_reader, args=(path,), daemon=True).start()
    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("listening %d" % srv.server_address[1], flush=True)
    sys.stdin.read()  # until the driver closes our stdin (or we are killed)
    srv.shutdown()


if __name__ == "__main__":
    main()
