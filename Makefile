# kumo's set-up. `make up` installs everything and runs kumo; `make test` runs the suite.
# Both work on a fresh Debian 12 machine as root (see README.md).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := python3 python3-venv python3-dev gcc qemu-system-x86 qemu-utils e2fsprogs \
	fdisk mmdebstrap grub-pc-bin busybox-static dropbear-bin socat cpio zstd xz-utils \
	ca-certificates openssh-client genisoimage postgresql-15 \
	swift swift-proxy swift-account swift-container swift-object memcached \
	dnsmasq-base nftables conntrack passt apt-cacher-ng iproute2 iputils-ping netcat-openbsd curl \
	chromium chromium-driver fonts-dejavu-core
PYTEST_ARGS ?=
# tempest in a virtual environment of its own (`make conformance`; `make test` runs the fast selections).
TEMPEST_VENV ?= .conformance/venv
TEMPEST_VERSION ?= 47.0.0
SELECTION ?= interop
CONFORMANCE_ARGS ?=

.PHONY: up test deps venv dev lint typecheck bench clean tempest conformance

## Debian packages kumo runs with (skipped when all are installed already).
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get -o DPkg::Lock::Timeout=300 update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
			--no-install-recommends $$missing; \
	fi

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: deps $(PY)
	$(PY) -m pip install -q -e .

dev: deps $(PY)
	$(PY) -m pip install -q -e '.[test]'

up: venv
	$(VENV)/bin/kumo up

## The suite on SQLite, then once more on a throw-away PostgreSQL cluster for the tests
## that use a database (unit and API; tests/postgres.py starts and removes the cluster).
test: dev tempest
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(VENV)/bin/pytest -q --database=postgresql -m "not e2e and not guest and not slow"

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck:
	$(VENV)/bin/mypy

## tempest, pinned, in its own venv (its oslo/keystoneauth pins must not meet kumo's).
tempest: $(TEMPEST_VENV)/bin/tempest
$(TEMPEST_VENV)/bin/tempest:
	python3 -m venv $(TEMPEST_VENV)
	$(TEMPEST_VENV)/bin/pip install -q tempest==$(TEMPEST_VERSION)

## Run a tempest selection against a fresh kumo: make conformance SELECTION=interop|image|identity|compute|network|<regex>
conformance: venv tempest
	$(PY) -m kumo.conformance $(SELECTION) --tempest-venv $(TEMPEST_VENV) $(CONFORMANCE_ARGS)

## bench/upload.py compares the first download with Debian's nginx.
bench: dev
	@command -v nginx >/dev/null || PATH=$$PATH:/usr/sbin command -v nginx >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
		--no-install-recommends nginx-light
	$(PY) bench/upload.py

clean:
	rm -rf $(VENV) .conformance .pytest_cache .mypy_cache .ruff_cache
