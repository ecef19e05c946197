# The two commands of the README: `make run` (the main job) and `make test` (everything CI checks).
# Both set up what they need on a fresh machine and are safe to run again.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := engine transports adapters avatar specs

.PHONY: run test cluster lint typecheck pytest bench setup system-deps browser-deps cluster-deps clean

# The embedded server on 127.0.0.1:8000 with the bundled portrait; it prints its API key.
run: setup
	$(BIN)/talkstream serve --port $(or $(PORT),8000)

test: setup browser-deps cluster-deps lint typecheck pytest

# Redis, coturn, HAProxy on 127.0.0.1:$(PORT) (default 8000) and $(WORKERS) workers (default 3), from deploy/;
# it prints the URL and a key; Ctrl-C stops everything.
cluster: setup cluster-deps
	$(BIN)/talkstream cluster --port $(or $(PORT),8000) --workers $(or $(WORKERS),3)

setup: $(STAMP)

# Debian packages the project needs. Today only venv support for a Debian python3 (a pyenv or
# python.org build has it already); later steps add more here.
system-deps:
	@if ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		echo "talkstream needs Python >= 3.11 ($(PYTHON) is $$($(PYTHON) -V 2>&1))"; exit 1; fi
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
		echo "installing python3-venv"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; fi

# Re-install whenever the project's metadata changes; the stamp makes a second run a no-op.
# The tts extra (espeak-ng, GPL-3.0) is installed for the demo and the tests; the library never needs it.
# The cluster extra (redis-py) is what `serve --redis` and `talkstream cluster` use.
$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,tts,cluster]'
	touch $@

# Debian's Chromium for the real-browser tests (tests/e2e); Playwright drives it, never downloads one.
browser-deps:
	@if ! test -x /usr/bin/chromium; then \
		echo "installing Debian's chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

# Debian's redis-server, haproxy and coturn for the cluster and relay tests. None is started as a service:
# each test starts its own on 127.0.0.1 (coturn's configuration: deploy/turnserver.conf).
cluster-deps:
	@if ! test -x /usr/bin/redis-server || ! test -x /usr/sbin/haproxy || ! test -x /usr/bin/turnserver; then \
		echo "installing redis-server haproxy coturn"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server haproxy coturn; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable import hook: check through a link tree shaped like the
# installed package.
typecheck: setup
	@mkdir -p .typecheck/talkstream
	@for p in $(PACKAGES); do ln -sfn ../../$$p .typecheck/talkstream/$$p; done
	@ln -sfn ../../talkstream/__init__.py .typecheck/talkstream/__init__.py
	MYPYPATH=.typecheck $(BIN)/mypy --namespace-packages --explicit-package-bases -p talkstream
	MYPYPATH=.typecheck:bench $(BIN)/mypy --namespace-packages --explicit-package-bases tests bench

pytest: setup
	$(BIN)/pytest

# Not part of `make test`: about 30 minutes, most of it the 5-minute lip-sync talk, the 6-minute churn and
# the concurrency sweep.
# Each writes bench/results/<name>.json; summary.py prints the table and draws the plots from them.
bench: setup browser-deps
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/animation.py
	$(BIN)/python bench/connect.py
	$(BIN)/python bench/browser_connect.py
	$(BIN)/python bench/talk_latency.py
	$(BIN)/python bench/lipsync.py
	$(BIN)/python bench/lip_tracking.py
	$(BIN)/python bench/interrupt.py
	$(BIN)/python bench/websocket.py
	$(BIN)/python bench/concurrency.py
	$(BIN)/python bench/idle.py
	$(BIN)/python bench/idle.py --fluent --streams 4 --window 10
	$(BIN)/python bench/churn.py
	$(BIN)/python bench/replay_suite.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/summary.py

clean:
	rm -rf $(VENV) .typecheck .pytest_cache .mypy_cache .ruff_cache .hypothesis
