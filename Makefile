# vsendmail — build, test, demo, bench and install.
#
#   make demo          build, start a loopback receiver, send one real message as
#                      you (bound to 127.0.0.2), print what the receiver saw
#   make test          (as root) install the test dependencies, then rustfmt,
#                      clippy, all tests, the compat suite; prints a summary
#   make bench         bench/run.sh: vsendmail vs msmtp vs a bare client
#   make install       PREFIX (default /usr/local), DESTDIR: binary (set-gid
#                      group vsendmail, 2755), man pages, spool, timer/cron files
#   make install-mta   install + the sendmail, mailq and newaliases links
#   make compat        the callers' compat suite (compat/run.sh)
#   make fuzz          scripts/fuzz.sh
#   make deb           dist/build-deb.sh: the Debian package in target/deb/
#   make clean

SHELL      := /bin/bash
CARGO      ?= cargo
PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
CRONDIR    ?= /etc/cron.d
SPOOLDIR   ?= /var/spool/vsendmail
GROUP      ?= vsendmail
BIN        := target/dist/vsendmail

.PHONY: all build test test-deps demo bench install install-mta compat fuzz deb clean

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
install: build
	@set -e; \
	root=$$(id -u); \
	if [ -z "$(DESTDIR)" ] && ! getent group $(GROUP) >/dev/null; then \
		echo "groupadd --system $(GROUP)"; groupadd --system $(GROUP); \
	fi; \
	grp=; if [ "$$root" -eq 0 ] && getent group $(GROUP) >/dev/null; then grp="-g $(GROUP)"; fi; \
	if [ -z "$$grp" ]; then echo "make install: note: group $(GROUP) not set (not root or no such group); fix ownership when packaging"; fi; \
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5; \
	mode=0755; if [ -n "$$grp" ]; then mode=2755; fi; \
	install -m $$mode $$grp $(BIN) $(DESTDIR)$(SBINDIR)/vsendmail; \
	echo "installed $(DESTDIR)$(SBINDIR)/vsendmail (mode $$mode$${grp:+, group $(GROUP)})"; \
	for m in man/*.8; do [ -e "$$m" ] && install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man8/; done; \
	for m in man/*.5; do [ -e "$$m" ] && install -m 0644 "$$m" $(DESTDIR)$(MANDIR)/man5/; done; \
	echo "installed man pages in $(DESTDIR)$(MANDIR)/man8 and man5"; \
	for d in "" /tmp /queue /rate /audit; do \
		install -d -m 2770 $$([ "$$root" -eq 0 ] && echo "-o root") $$grp $(DESTDIR)$(SPOOLDIR)$$d; \
		chmod 2770 $(DESTDIR)$(SPOOLDIR)$$d; \
	done; \
	echo "spool $(DESTDIR)$(SPOOLDIR) with tmp, queue, rate, audit (mode 2770$${grp:+, root:$(GROUP)})"; \
	if ls dist/systemd/* >/dev/null 2>&1; then \
		install -d $(DESTDIR)$(SYSTEMDDIR); \
		for f in dist/systemd/*; do \
			sed 's|@SBINDIR@|$(SBINDIR)|g' "$$f" > $(DESTDIR)$(SYSTEMDDIR)/$$(basename "$$f"); \
			chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$(basename "$$f"); \
		done; \
		echo "installed systemd units in $(DESTDIR)$(SYSTEMDDIR)"; \
	fi; \
	if ls dist/cron.d/* >/dev/null 2>&1; then \
		install -d $(DESTDIR)$(CRONDIR); \
		for f in dist/cron.d/*; do \
			sed 's|@SBINDIR@|$(SBINDIR)|g' "$$f" > $(DESTDIR)$(CRONDIR)/$$(basename "$$f"); \
			chmod 0644 $(DESTDIR)$(CRONDIR)/$$(basename "$$f"); \
		done; \
		echo "installed cron files in $(DESTDIR)$(CRONDIR)"; \
	fi

# The links every caller of sendmail expects (replacing another MTA's links).
install-mta: install
	@set -e; \
	install -d $(DESTDIR)/usr/sbin $(DESTDIR)/usr/lib $(DESTDIR)/usr/bin; \
	for l in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/newaliases; do \
		if [ "$(SBINDIR)/vsendmail" != "$$l" ]; then \
			ln -sfn $(SBINDIR)/vsendmail $(DESTDIR)$$l; \
			echo "$(DESTDIR)$$l -> $(SBINDIR)/vsendmail"; \
		fi; \
	done

clean:
	$(CARGO) clean
