# vsendmail — build, test, demo, bench and install.
#
#   make demo          build, start a loopback receiver, send one real message as
#                      you (bound to 127.0.0.2), print what the receiver saw
#   make test          (as root) install the test dependencies, then rustfmt,
#                      clippy, all tests, the compat suite; prints a summary
#   make bench         bench/run.sh: vsendmail vs msmtp vs a bare client
#   make install       PREFIX (default /usr/local), DESTDIR: binary (set-gid
#                      group vsendmail, 2755), man pages, spool, timer/cron
#                      files, examples (never /etc/vsendmail.conf or virtusers)
#   make install-mta   install + the sendmail, mailq and newaliases links;
#                      refuses to replace another MTA's unless FORCE=1 (which
#                      keeps it as NAME.pre-vsendmail)
#   make uninstall     undo install/install-mta (same PREFIX, DESTDIR): puts
#                      back the other MTA's links; keeps the spool (queue,
#                      audit trail) and /etc
#   make compat        the callers' compat suite (compat/run.sh)
#   make fuzz          scripts/fuzz.sh
#   make deb           dist/build-deb.sh: the Debian source and binary packages
#                      (dpkg-buildpackage, then lintian) in target/deb/
#   make clean

SHELL      := /bin/bash
CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/vsendmail
EXAMPLESDIR ?= $(DOCDIR)/examples
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
CRONDIR    ?= /etc/cron.d
SPOOLDIR   ?= /var/spool/vsendmail
GROUP      ?= vsendmail
FORCE      ?=
# cargo's target directory: CARGO_TARGET_DIR when set (dist/build-deb.sh
# builds a copy of the tree with the tree's own target directory).
BIN        := $(or $(CARGO_TARGET_DIR),target)/dist/vsendmail
# What every caller of sendmail expects, and the man pages under those names.
MTA_LINKS  := /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases
MAN_LINKS  := sendmail mailq newaliases
# install-mta FORCE=1 keeps another MTA's file as NAME$(BACKUP).
BACKUP     := .pre-vsendmail
# Installed beside the man pages as examples (never into /etc).
EXAMPLES   := dist/examples/vsendmail.conf dist/examples/virtusers dist/examples/aliases \
              dist/nftables.conf dist/nftables.md

.PHONY: all build test test-deps demo bench install install-mta uninstall compat fuzz deb clean

all: build

build:
	$(CARGO) build --profile dist

test-deps:
	bash scripts/install-test-deps.sh

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench:
	bash bench/run.sh

compat:
	@if [ -f compat/run.sh ]; then bash compat/run.sh; \
	else echo "make compat: no compat suite yet (compat/run.sh)"; fi

deb:
	bash dist/build-deb.sh

fuzz:
	@if [ -f scripts/fuzz.sh ]; then bash scripts/fuzz.sh; \
	else echo "make fuzz: no fuzzing set up yet (scripts/fuzz.sh)"; fi

# The binary is set-gid to $(GROUP) so that it can write the shared spool
# (root:$(GROUP) 2770) and read DKIM keys that users cannot. The group is
# created (system group) when missing and DESTDIR is empty; with a DESTDIR
# (packaging) the group is set only if it exists and we are root.
# The timer, its service and the cron line are made from the templates in
# dist/ (@SBINDIR@ becomes $(SBINDIR)), so they run this vsendmail, never
# whatever /usr/sbin/sendmail is. The cron line does nothing where systemd
# runs (the timer does the work there); without DESTDIR on such a host the
# timer is enabled.
install: build
	@set -e; \
	if [ -z "$(DESTDIR)" ] && command -v dpkg-query >/dev/null && dpkg-query -S "$(SBINDIR)/vsendmail" >/dev/null 2>&1; then \
		echo "make install: $(SBINDIR)/vsendmail belongs to a Debian package ($$(dpkg-query -S "$(SBINDIR)/vsendmail" | cut -d: -f1)): upgrade that package, or install with another PREFIX" >&2; \
		exit 1; \
	fi; \
	root=$$(id -u); \
	if [ -z "$(DESTDIR)" ] && ! getent group $(GROUP) >/dev/null; then \
		echo "groupadd --system $(GROUP)"; groupadd --system $(GROUP); \
	fi; \
	grp=; if [ "$$root" -eq 0 ] && getent group $(GROUP) >/dev/null; then grp="-g $(GROUP)"; fi; \
	if [ -z "$$grp" ]; then echo "make install: note: group $(GROUP) not set (not root or no such group); fix ownership when packaging"; fi; \
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5; \
	mode=0755; if [ -n "$$grp" ]; then mode=2755; fi; \
	install -s -m $$mode $$grp $(BIN) $(DESTDIR)$(SBINDIR)/vsendmail; \
	echo "installed $(DESTDIR)$(SBINDIR)/vsendmail (mode $$mode$${grp:+, group $(GROUP)})"; \
	for m in man/*.8; do [ -e "$$m" ] && install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man8/; done; \
	for m in man/*.5; do [ -e "$$m" ] && install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man5/; done; \
	echo "installed man pages in $(DESTDIR)$(MANDIR)/man8 and man5"; \
	for d in "" /tmp /queue /rate /audit /oauth2 /breaker /suspended /backoff /mta-sts; do \
		install -d -m 2770 $$([ "$$root" -eq 0 ] && echo "-o root") $$grp $(DESTDIR)$(SPOOLDIR)$$d; \
		chmod 2770 $(DESTDIR)$(SPOOLDIR)$$d; \
	done; \
	echo "spool $(DESTDIR)$(SPOOLDIR) with tmp, queue, rate, audit, oauth2, breaker, suspended, backoff, mta-sts (mode 2770$${grp:+, root:$(GROUP)})"; \
	install -d $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(CRONDIR) $(DESTDIR)$(EXAMPLESDIR); \
	for f in dist/systemd/*; do \
		n=$$(basename "$$f" .in); \
		sed 's|@SBINDIR@|$(SBINDIR)|g' "$$f" > $(DESTDIR)$(SYSTEMDDIR)/$$n; \
		chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$n; \
	done; \
	echo "installed vsendmail-queue.timer and .service in $(DESTDIR)$(SYSTEMDDIR) (they run $(SBINDIR)/vsendmail -q5m)"; \
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/cron.d/vsendmail.in > $(DESTDIR)$(CRONDIR)/vsendmail; \
	chmod 0644 $(DESTDIR)$(CRONDIR)/vsendmail; \
	echo "installed $(DESTDIR)$(CRONDIR)/vsendmail (runs $(SBINDIR)/vsendmail -q5m where systemd does not run)"; \
	install -m 0644 $(EXAMPLES) $(DESTDIR)$(EXAMPLESDIR)/; \
	echo "installed examples in $(DESTDIR)$(EXAMPLESDIR): vsendmail.conf, virtusers, aliases, nftables.conf"; \
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then \
		systemctl daemon-reload; \
		systemctl enable --now vsendmail-queue.timer; \
		echo "enabled vsendmail-queue.timer (queue run every 5 minutes)"; \
	fi; \
	if [ -z "$(DESTDIR)" ]; then \
		[ -e /etc/vsendmail.conf ] || echo "next: cp $(EXAMPLESDIR)/vsendmail.conf /etc/ and edit it (without it: every default)"; \
		[ -e /etc/virtusers ] || echo "next: cp $(EXAMPLESDIR)/virtusers /etc/ and add one line per site (without it every user sends as the host)"; \
		[ -e /etc/aliases ] || echo "next: cp $(EXAMPLESDIR)/aliases /etc/ and map root and postmaster to real addresses (vsendmail delivers nothing locally)"; \
		echo "then: sendmail -bi (checks /etc/virtusers, aliases, config; writes the index)"; \
	fi

# The links every caller of sendmail expects. Another MTA's /usr/sbin/sendmail
# (or mailq, ...) is replaced only with FORCE=1, which keeps it as
# NAME$(BACKUP); `make uninstall` puts it back. Nothing is installed when
# refused.
install-mta:
	@set -e; \
	foreign=; \
	for l in $(MTA_LINKS); do \
		t=$(DESTDIR)$$l; \
		if [ -L "$$t" ] && [ "$$(basename "$$(readlink "$$t")")" = vsendmail ]; then continue; fi; \
		if [ -e "$$t" ] || [ -L "$$t" ]; then foreign="$$foreign $$t"; fi; \
	done; \
	if [ -n "$$foreign" ] && [ "$(FORCE)" != 1 ]; then \
		owner=; \
		if [ -z "$(DESTDIR)" ] && command -v dpkg-query >/dev/null; then \
			owner=$$(dpkg-query -S /usr/sbin/sendmail 2>/dev/null | cut -d: -f1 | head -1); \
		fi; \
		echo "make install-mta: refused: another MTA$${owner:+ (package $$owner)} owns$$foreign. Remove it first$${owner:+ (apt-get remove $$owner)}, or run 'make install-mta FORCE=1', which keeps each as NAME$(BACKUP) ('make uninstall' puts them back)" >&2; \
		exit 1; \
	fi
	@$(MAKE) --no-print-directory install
	@set -e; \
	install -d $(DESTDIR)/usr/sbin $(DESTDIR)/usr/lib $(DESTDIR)/usr/bin; \
	for l in $(MTA_LINKS); do \
		t=$(DESTDIR)$$l; \
		if [ "$(SBINDIR)/vsendmail" = "$$l" ]; then continue; fi; \
		if { [ -e "$$t" ] || [ -L "$$t" ]; } && ! { [ -L "$$t" ] && [ "$$(basename "$$(readlink "$$t")")" = vsendmail ]; }; then \
			mv -fT "$$t" "$$t$(BACKUP)"; \
			echo "kept the other MTA's $$t as $$t$(BACKUP)"; \
		fi; \
		ln -sfn $(SBINDIR)/vsendmail "$$t"; \
		echo "$$t -> $(SBINDIR)/vsendmail"; \
	done; \
	for n in $(MAN_LINKS); do ln -sfn vsendmail.8 $(DESTDIR)$(MANDIR)/man8/$$n.8; done; \
	echo "man pages sendmail(8), mailq(8), newaliases(8) -> vsendmail(8)"; \
	if ls $(DESTDIR)/usr/sbin/sendmail$(BACKUP) >/dev/null 2>&1; then \
		echo "to switch back to the other MTA: make uninstall$(if $(filter-out /usr/local,$(PREFIX)), PREFIX=$(PREFIX))$(if $(DESTDIR), DESTDIR=$(DESTDIR))"; \
		if [ -z "$(DESTDIR)" ] && command -v dpkg-query >/dev/null && dpkg-query -S /usr/sbin/sendmail >/dev/null 2>&1; then \
			echo "note: an upgrade of $$(dpkg-query -S /usr/sbin/sendmail | cut -d: -f1) puts its sendmail back; remove that package, or run make install-mta FORCE=1 again"; \
		fi; \
	fi

# Undo install and install-mta of the same PREFIX and DESTDIR. Removes only
# what they installed (links only where they point to this vsendmail) and puts
# back the other MTA's files kept by FORCE=1. The spool (queued mail and the
# audit trail), /etc/vsendmail.conf, /etc/virtusers, the secrets, the keys and
# the group stay; the last lines say where they are.
uninstall:
	@set -e; \
	if [ -z "$(DESTDIR)" ] && command -v dpkg-query >/dev/null && dpkg-query -S "$(SBINDIR)/vsendmail" >/dev/null 2>&1; then \
		echo "make uninstall: $(SBINDIR)/vsendmail belongs to a Debian package ($$(dpkg-query -S "$(SBINDIR)/vsendmail" | cut -d: -f1)): apt-get remove it instead" >&2; \
		exit 1; \
	fi; \
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then \
		systemctl disable --now vsendmail-queue.timer >/dev/null 2>&1 || true; \
	fi; \
	for l in $(MTA_LINKS); do \
		t=$(DESTDIR)$$l; \
		if [ -L "$$t" ] && [ "$$(readlink "$$t")" = "$(SBINDIR)/vsendmail" ]; then rm -f "$$t"; echo "removed $$t"; fi; \
		if { [ -e "$$t$(BACKUP)" ] || [ -L "$$t$(BACKUP)" ]; } && ! { [ -e "$$t" ] || [ -L "$$t" ]; }; then \
			mv -T "$$t$(BACKUP)" "$$t"; echo "restored the other MTA's $$t (from $$t$(BACKUP))"; \
		fi; \
	done; \
	for n in $(MAN_LINKS); do \
		t=$(DESTDIR)$(MANDIR)/man8/$$n.8; \
		if [ -L "$$t" ] && [ "$$(readlink "$$t")" = vsendmail.8 ]; then rm -f "$$t"; fi; \
	done; \
	rm -f $(DESTDIR)$(SBINDIR)/vsendmail; \
	for m in man/*.8; do rm -f $(DESTDIR)$(MANDIR)/man8/$$(basename "$$m"); done; \
	for m in man/*.5; do rm -f $(DESTDIR)$(MANDIR)/man5/$$(basename "$$m"); done; \
	for f in dist/systemd/*; do rm -f $(DESTDIR)$(SYSTEMDDIR)/$$(basename "$$f" .in); done; \
	rm -f $(DESTDIR)$(CRONDIR)/vsendmail; \
	for f in $(EXAMPLES); do rm -f $(DESTDIR)$(EXAMPLESDIR)/$$(basename "$$f"); done; \
	rmdir $(DESTDIR)$(EXAMPLESDIR) $(DESTDIR)$(DOCDIR) 2>/dev/null || true; \
	echo "removed $(DESTDIR)$(SBINDIR)/vsendmail, its man pages, timer, service, cron line and examples"; \
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi; \
	echo "kept: the spool $(DESTDIR)$(SPOOLDIR) (queued mail; the audit trail in $(DESTDIR)$(SPOOLDIR)/audit), /etc/vsendmail.conf, /etc/virtusers, /etc/vsendmail.secrets, the keys, the group $(GROUP)"; \
	echo "to remove them too: rm -rf $(DESTDIR)$(SPOOLDIR); groupdel $(GROUP)"

clean:
	$(CARGO) clean
