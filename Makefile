# The two commands a newcomer needs: `make run` and `make test`.
# The interpreter the virtualenv is made from: Debian's /usr/bin/python3 where it is 3.11+ and can
# make one (python3-venv), else the first python3 on the PATH. Debian builds its interpreter with
# profile-guided and link-time optimisation, libpython linked in; a pyenv or plain source build
# (no --enable-optimizations, a shared libpython) ran 10% more instructions a lifecycle and 12 to
# 22% fewer lifecycles a second on these machines (README, performance). PYTHON=... picks another; an existing .venv is kept
# (make clean to rebuild it).
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	  $$p -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $$p && break; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ASSETS := node_modules/.installed

.PHONY: run test venv assets tools db demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# bpmn-js (the modeler and the diagram viewer) from the npm registry, pinned by package-lock.json.
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(ASSETS)

assets: $(ASSETS)

# Debian's chromium for the browser tests (never a browser downloaded by a test tool), and wrk,
# the HTTP load generator of bench/http_load.py (its smoke run is in the suite).
tools:
	@command -v chromium >/dev/null && command -v wrk >/dev/null \
	  || apt-get install -y --no-install-recommends chromium wrk \
	  || (apt-get update && apt-get install -y --no-install-recommends chromium wrk)

db: venv
	$(BIN)/giaitrinh db upgrade

demo: db assets
	$(BIN)/giaitrinh seed-demo

# Set up everything and start the web server with its scheduler on http://127.0.0.1:8000
run: demo
	GIAITRINH_DEV_CLOCK=$${GIAITRINH_DEV_CLOCK:-1} $(BIN)/giaitrinh serve --host 127.0.0.1 --port 8000

test: venv assets tools
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) instance node_modules
