#!/usr/bin/python3
"""compat/py/subprocess_caller.py SENDMAIL SENDER RCPT TOKEN: send the way
Python scripts do, with subprocess and no shell: `-t -oi` with the message on
stdin, then `-f SENDER -- RCPT`, then a hostile recipient that starts with
`-` (must be refused). Prints one JSON list: per call the argv, exit code,
stdout and stderr."""
import json
import subprocess
import sys

sendmail, sender, rcpt, token = sys.argv[1:5]
calls = [
    ([sendmail, "-t", "-oi"],
     "From: Py Script <%s>\nTo: %s\nSubject: py-t %s\n\nbody %s-1\n" % (sender, rcpt, token, token)),
    ([sendmail, "-f", sender, "--", rcpt],
     "Subject: py-f %s\n\nbody %s-2\n" % (token, token)),
    ([sendmail, "--", "-oQ/tmp/x", rcpt],
     "Subject: py-evil %s\n\nbody %s-3\n" % (token, token)),
]
out = []
for argv, msg in calls:
    p = subprocess.run(argv, input=msg.encode(), capture_output=True, timeout=60)
    out.append({"argv": argv[1:], "code": p.returncode,
                "stdout": p.stdout.decode(errors="replace"),
                "stderr": p.stderr.decode(errors="replace")})
print(json.dumps(out))
