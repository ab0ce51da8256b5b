# From a fresh clone: `make serve` or `make test`. The venv is built once (stamp file)
# and rebuilt only when setup.cfg or pyproject.toml change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS_STAMP := $(VENV)/.tools
# Real clients the process tests drive; installed from Debian's packages when missing.
TEST_TOOLS := curl:curl wget:wget aria2c:aria2 chromium:chromium \
	chromedriver:chromium-driver nginx:nginx openssl:openssl rclone:rclone apt-ftparchive:apt-utils \
	node:nodejs npm:npm git:git cc:gcc bazel:bazel-bootstrap gradle:gradle
# Load generator and nginx baseline for `make bench` (curl too); installed from Debian's
# packages when missing, as root or with passwordless sudo. The bench runs without them.
BENCH_STAMP := $(VENV)/.bench-tools
BENCH_TOOLS := wrk:wrk nginx:nginx curl:curl taskset:util-linux
BENCH_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install serve test test-fast lint bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# Installs the missing client tools (needs root or sudo; the tests fail loudly without them).
$(TOOLS_STAMP): | $(STAMP)
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; for pair in $(TEST_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test tools:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	touch $(TOOLS_STAMP)

serve: $(STAMP)
	$(BIN)/artifactd serve --root ./storage --host $(HOST) --port $(PORT)

# turbo and nx for the build-cache tests, pinned in tests/fixtures/npm, under .venv/node.
NPM_STAMP := $(VENV)/.npm-tools
$(NPM_STAMP): tests/fixtures/npm/package.json tests/fixtures/npm/package-lock.json \
		tests/tools/install_npm.sh | $(STAMP) $(TOOLS_STAMP)
	tests/tools/install_npm.sh $(VENV)/node
	touch $(NPM_STAMP)

test: $(STAMP) $(TOOLS_STAMP) $(NPM_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop: unit, storage (no S3), in-process app and CLI tests, well under a
# minute. No real servers, SeaweedFS, Chromium or slow tests (markers: pyproject.toml).
FAST_MARKERS := not (process or s3 or browser or slow)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check artifactd tests bench
	$(BIN)/ruff format --check artifactd tests bench
	$(BIN)/mypy

# Touched only once every bench tool is there, so a failed install is retried next time.
$(BENCH_STAMP): | $(STAMP)
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; for pair in $(BENCH_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -z "$$missing" ]; then touch $(BENCH_STAMP); exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "bench tools missing:$$missing (not root, no sudo): the bench omits what needs them"; \
	  exit 0; fi; \
	echo "installing bench tools:$$missing"; \
	if $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	then touch $(BENCH_STAMP); \
	else echo "could not install$$missing: the bench omits what needs them"; fi

# ducktors' turborepo-remote-cache for the cache-mix workload, pinned in bench/npm, under
# .venv/bench-node; without npm the bench leaves it out (and says so).
BENCH_NPM_STAMP := $(VENV)/.bench-npm
$(BENCH_NPM_STAMP): bench/npm/package.json bench/npm/package-lock.json bench/install_npm.sh \
		| $(STAMP)
	@if command -v npm >/dev/null 2>&1; then bench/install_npm.sh $(VENV)/bench-node && \
	  touch $(BENCH_NPM_STAMP); \
	else echo "npm is not installed: the bench leaves out ducktors' turborepo-remote-cache"; fi

# Full run: several minutes. Quick: `make bench BENCH_SCALE=small` (or BENCH_ARGS=--help).
bench: $(STAMP) $(BENCH_STAMP) $(BENCH_NPM_STAMP)
	$(BIN)/python -m bench.harness $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
