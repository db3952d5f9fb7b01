# csp — build, install, test.
#
#   make install            # into ~/.local (no root needed)
#   make install PREFIX=/usr DESTDIR=/tmp/pkg   # for packagers
#   make test               # the whole suite (creates .venv on first use)
#   make check              # ruff + mypy
#   make bench              # figures into bench-results.json
#   make deb                # Debian package into build/deb/ (packaging/README.md)

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
# every dependency built the PEP 517 way: the venv's pip (23.0 on Debian 12) would
# otherwise build sdnotify (an sdist only) with the deprecated `setup.py install`
PEP517      := --use-pep517

DEV_VENV := .venv
DEV_STAMP := $(DEV_VENV)/.csp-dev-stamp

.PHONY: all install uninstall dev test check bench clean deb

all: dev

install:
	@echo "==> creating the environment in $(DESTDIR)$(VENV)"
	$(PYTHON) -m venv --clear $(DESTDIR)$(VENV)
	@echo "==> installing csp and its dependencies"
	$(DESTDIR)$(VENV)/bin/pip install $(PIP_FLAGS) $(PEP517) $(if $(DESTDIR),--no-compile) .
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
	  if systemctl --user is-active --quiet csp-gateway.service; then \
	    systemctl --user restart csp-gateway.service && \
	    echo "==> the gateway was running: restarted it, it runs the new installation"; \
	  else \
	    echo "==> start it:  systemctl --user enable --now csp-gateway.socket"; \
	  fi; \
	else \
	  echo "==> no user manager reached: run 'systemctl --user daemon-reload' in your session"; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
	  gw=$$(systemctl --user show -P MainPID csp-gateway.service 2>/dev/null || true); \
	  old=$$($(PYTHON) packaging/stop-installation --list $(VENV) | grep -v "^ *$${gw:-none}:" || true); \
	  if [ -n "$$old" ]; then \
	    echo "==> still running the code of the previous installation (restart them):"; \
	    echo "$$old"; \
	  fi; \
	fi

# Stops what runs from what it removes, before removing it: the gateway's units (when
# they are this installation's), then the tmux sessions and sidecars started from the
# environment (packaging/stop-installation).
uninstall:
	-@if [ -z "$(DESTDIR)" ] && [ -e $(UNITDIR)/csp-gateway.service ] && \
	    systemctl --user show-environment >/dev/null 2>&1; then \
	  if systemctl --user is-active --quiet csp-gateway.service; then \
	    echo "==> stopping the gateway"; fi; \
	  systemctl --user disable --now $(UNITS) >/dev/null 2>&1; fi
	@if [ -z "$(DESTDIR)" ] && [ -d $(VENV) ]; then $(PYTHON) packaging/stop-installation $(VENV); fi
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(EXECUTABLES))
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(LIBDIR)
	-@if [ -z "$(DESTDIR)" ] && systemctl --user show-environment >/dev/null 2>&1; then \
	  systemctl --user daemon-reload; fi

$(DEV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install $(PIP_FLAGS) $(PEP517) -e '.[dev]'
	touch $@

dev: $(DEV_STAMP)

# Two runs.  Everything but the systemd tests on three workers: they wait on real CLIs,
# PTYs and tmux far more than they compute.  Then the systemd tests alone: they share
# one isolated user manager, and its start and restart timings are what they check, so
# they get the machine to themselves.
test: $(DEV_STAMP)
	$(DEV_VENV)/bin/python -m pytest -n 3 -m "not systemd" $(PYTEST_ARGS)
	$(DEV_VENV)/bin/python -m pytest -m systemd $(PYTEST_ARGS)

check: $(DEV_STAMP)
	$(DEV_VENV)/bin/ruff check cspd sidecar cli tests
	$(DEV_VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(DEV_VENV)/bin/python -m tests.bench.run --output bench-results.json

# The Debian package.  The source tree is copied to build/deb/csp-VERSION with
# packaging/debian as its debian/; the wheels of what Debian 12 lacks
# (packaging/debian/vendor.txt) are downloaded into its debian/vendor/ first, so
# dpkg-buildpackage itself needs no network.  Debian's tools and python3 only:
# PATH is reset so a python3 from pyenv or a venv is not picked up.
DEB_VERSION  = $(shell dpkg-parsechangelog -l packaging/debian/changelog -S Version)
DEB_STAGE    = build/deb/csp-$(DEB_VERSION)
DEB_PATH    := /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

deb:
	@command -v dpkg-buildpackage >/dev/null && command -v lintian >/dev/null || { \
	  echo "make deb needs dpkg-dev, lintian and the Build-Depends of packaging/debian/control"; \
	  exit 1; }
	rm -rf build/deb && mkdir -p $(DEB_STAGE)
	tar -c --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
	  --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
	  --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis \
	  --exclude=./packaging/debian . | tar -x -C $(DEB_STAGE)
	cp -a packaging/debian $(DEB_STAGE)/debian
	@echo "==> downloading the wheels to bundle (debian/vendor.txt)"
	PATH=$(DEB_PATH) python3 -m pip download $(PIP_FLAGS) --only-binary=:all: --no-deps \
	  --dest $(DEB_STAGE)/debian/vendor -r packaging/debian/vendor.txt
	@echo "==> dpkg-buildpackage"
	cd $(DEB_STAGE) && PATH=$(DEB_PATH) dpkg-buildpackage -us -uc -b
	@echo "==> lintian"
	PATH=$(DEB_PATH) lintian --fail-on error build/deb/csp_$(DEB_VERSION)_*.changes
	@ls -1 build/deb/*.deb

clean:
	rm -rf build *.egg-info $(DEV_VENV) .mypy_cache .ruff_cache .pytest_cache
