# csp — build, install, test.
#
#   make install            # into ~/.local (no root needed)
#   make install PREFIX=/usr DESTDIR=/tmp/pkg   # for packagers
#   make test               # the whole suite (creates .venv on first use)
#   make check              # ruff + mypy
#   make bench              # figures into bench-results.json

PREFIX  ?= $(HOME)/.local
DESTDIR ?=
PYTHON  ?= python3
LIBDIR  := $(PREFIX)/lib/csp
VENV    := $(LIBDIR)/venv
BINDIR  := $(PREFIX)/bin
ifeq ($(PREFIX),/usr)
UNITDIR ?= /usr/lib/systemd/user
else
UNITDIR ?= $(PREFIX)/share/systemd/user
endif
EXECUTABLES := cspd csp-sidecar cspctl
UNITS       := csp-gateway.service csp-gateway.socket csp-gateway-tcp.socket
PIP_FLAGS   ?= --quiet --disable-pip-version-check

DEV_VENV := .venv
DEV_STAMP := $(DEV_VENV)/.csp-dev-stamp

.PHONY: all install uninstall dev test check bench clean

all: dev

install:
	@echo "==> creating the environment in $(DESTDIR)$(VENV)"
	$(PYTHON) -m venv --clear $(DESTDIR)$(VENV)
	@echo "==> installing csp and its dependencies"
	$(DESTDIR)$(VENV)/bin/pip install $(PIP_FLAGS) $(if $(DESTDIR),--no-compile) .
	@if [ -n "$(DESTDIR)" ]; then \
	  echo "==> removing DESTDIR from the environment's scripts"; \
	  grep -rlI -- '$(DESTDIR)' $(DESTDIR)$(VENV)/bin $(DESTDIR)$(VENV)/pyvenv.cfg | \
	    xargs -r sed -i 's|$(DESTDIR)||g'; \
	  echo "==> byte-compiling with the final paths"; \
	  $(PYTHON) -m compileall -q -f -s '$(DESTDIR)' -p / $(DESTDIR)$(VENV)/lib; \
	fi
	install -d -m 755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)
	@for exe in $(EXECUTABLES); do \
	  ln -sfn $(VENV)/bin/$$exe $(DESTDIR)$(BINDIR)/$$exe; \
	  echo "    $(BINDIR)/$$exe -> $(VENV)/bin/$$exe"; \
	done
	sed 's|@CSPD@|$(VENV)/bin/cspd|g' units/csp-gateway.service \
	  > $(DESTDIR)$(UNITDIR)/csp-gateway.service
	install -m 644 units/csp-gateway.socket units/csp-gateway-tcp.socket $(DESTDIR)$(UNITDIR)/
	chmod 644 $(DESTDIR)$(UNITDIR)/csp-gateway.service
	@if [ -z "$(DESTDIR)" ] && systemctl --user show-environment >/dev/null 2>&1; then \
	  systemctl --user daemon-reload && echo "==> systemd user manager reloaded"; \
	  echo "==> start it:  systemctl --user start csp-gateway"; \
	else \
	  echo "==> no user manager reached: run 'systemctl --user daemon-reload' in your session"; \
	fi

uninstall:
	-@if [ -z "$(DESTDIR)" ] && systemctl --user show-environment >/dev/null 2>&1; then \
	  systemctl --user disable --now $(UNITS) >/dev/null 2>&1; fi
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(EXECUTABLES))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(LIBDIR)
	-@if [ -z "$(DESTDIR)" ] && systemctl --user show-environment >/dev/null 2>&1; then \
	  systemctl --user daemon-reload; fi

$(DEV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

dev: $(DEV_STAMP)

# Two runs.  Everything but the systemd tests on two workers: they wait on real CLIs,
# PTYs and tmux far more than they compute.  Then the systemd tests alone: they share
# one isolated user manager, and its start and restart timings are what they check, so
# they get the machine to themselves.
test: $(DEV_STAMP)
	$(DEV_VENV)/bin/python -m pytest -n 2 -m "not systemd" $(PYTEST_ARGS)
	$(DEV_VENV)/bin/python -m pytest -m systemd $(PYTEST_ARGS)

check: $(DEV_STAMP)
	$(DEV_VENV)/bin/ruff check cspd sidecar cli tests
	$(DEV_VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(DEV_VENV)/bin/python -m tests.bench.run --output bench-results.json

clean:
	rm -rf build *.egg-info $(DEV_VENV) .mypy_cache .ruff_cache .pytest_cache
