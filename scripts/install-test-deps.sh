#!/usr/bin/env bash
# scripts/install-test-deps.sh — install the Debian packages that `make test`
# (and `make bench`, `make demo`) need. Run as root; idempotent, and quick when
# everything is already there (no apt-get update then).
#
#   postfix    a real MTA as receiver in the end-to-end tests: installed with
#              "No configuration", so the system instance has no main.cf and
#              never starts; each test runs its own private instance
#              (tests/integration/support/postfix.rs) on a loopback port
#   mandoc     man page lint;  openssl  test certificates
#   msmtp, hyperfine   the benchmark;  dnsutils (dig)  DNS harness self-test
#   python3    caller compat tests;  dkimpy, dnspython, pynacl (pip)  the independent DKIM verifier
#   time       GNU time: peak RSS of one run (DKIM signing of a 50 MB message)
#   nftables   nft: the dist/nftables.conf test (tests/integration/trust.rs)
#   strace     freezes a user's run right after its flock() calls
#              (tests/integration/hostile_queue.rs)
#
# To add a package, append it to PKGS.
set -euo pipefail

PKGS=(postfix mandoc openssl msmtp dnsutils hyperfine python3 python3-pip ca-certificates make time nftables iproute2 util-linux passwd strace)
# compat suite (compat/run.sh): the real callers of sendmail, cron, and the
# Debian packaging (dpkg-dev, debhelper: dist/build-deb.sh; lintian:
# dist/lint-deb.sh)
PKGS+=(php-cli php-symfony-mailer libphp-phpmailer git-email libmailtools-perl mutt bsd-mailx s-nail cron)
PKGS+=(dpkg-dev debhelper lintian)

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: all present (${PKGS[*]})"
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-test-deps: missing ${missing[*]}; run as root (sudo make test)" >&2
        exit 77
    fi
    echo "install-test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix: no configuration at all, so no system instance is set up.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep package scripts from starting any service while we install.
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    cleanup() { if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    apt-get update -q -o Acquire::Retries=3
    apt-get install -y -q -o Acquire::Retries=3 --no-install-recommends "${missing[@]}"
    cleanup
    trap - EXIT
fi

python3 -c 'import dkim, dns.message, nacl' 2>/dev/null || python3 -m pip install -q --break-system-packages dkimpy dnspython pynacl

# The system Postfix instance must not run (the tests start their own, and
# nothing may listen on port 25 for them). With "No configuration" it has no
# main.cf and cannot start; if this machine has one running anyway, stop it
# unless KEEP_SYSTEM_POSTFIX=1.
if [ -e /etc/postfix/main.cf ] && /usr/sbin/postfix status >/dev/null 2>&1; then
    if [ -n "${KEEP_SYSTEM_POSTFIX:-}" ]; then
        echo "install-test-deps: note: the system Postfix runs (KEEP_SYSTEM_POSTFIX set: left running)"
    else
        echo "install-test-deps: stopping the system Postfix instance (set KEEP_SYSTEM_POSTFIX=1 to keep it)"
        /usr/sbin/postfix stop || true
        if [ -d /run/systemd/system ]; then
            systemctl disable --now postfix >/dev/null 2>&1 || true
        fi
    fi
fi

for c in /usr/sbin/postfix /usr/lib/postfix/sbin/master openssl dig mandoc msmtp hyperfine setpriv useradd nft; do
    command -v "$c" >/dev/null || { echo "install-test-deps: $c still missing" >&2; exit 69; }
done
getent passwd postfix >/dev/null && getent group postdrop >/dev/null || {
    echo "install-test-deps: the postfix user or postdrop group is missing (reinstall postfix)" >&2
    exit 69
}
