# mpesa-gateway: every target installs what it needs first, so a fresh clone works with no manual step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FUNCTIONS_VENV := functions/venv
STAMP_DIR := .stack

.PHONY: install dev schedules test test-unit demo lint bench clean help console chromium screenshots

help:
	@echo "make test   install everything, start the local stack, run all test tiers, stop the stack"
	@echo "make test-unit  the tests that need nothing running: stack-free tiers and the SDKs' unit tests"
	@echo "make demo   install everything, start the stack if needed, run the end-to-end walk-through"
	@echo "            (KEEP=1 leaves the stack running so the console at http://127.0.0.1:5000 shows it)"
	@echo "make dev    start the whole local stack in the foreground (Ctrl-C stops it)"
	@echo "make schedules  run the scheduled functions (reconcile, webhook sweep) every 60 s against the stack"
	@echo "make lint   ruff + mypy"
	@echo "make bench  benchmarks; writes bench/results/latest.json"
	@echo "make console      build the developer console into console/dist (Hosting serves it)"
	@echo "make screenshots  refresh console/screenshots/ from the browser tests"

$(STAMP_DIR):
	@mkdir -p $(STAMP_DIR)

# The dev/test venv: tools plus the functions' own runtime dependencies.
$(STAMP_DIR)/venv.stamp: requirements.txt functions/requirements.txt | $(STAMP_DIR)
	@echo "==> creating $(VENV) (dev and test tools)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# The functions emulator runs the functions from functions/venv, as Cloud Functions would from requirements.txt.
$(STAMP_DIR)/functions-venv.stamp: functions/requirements.txt | $(STAMP_DIR)
	@echo "==> creating $(FUNCTIONS_VENV) (functions runtime)"
	@test -x $(FUNCTIONS_VENV)/bin/python || $(PYTHON) -m venv $(FUNCTIONS_VENV)
	@$(FUNCTIONS_VENV)/bin/pip install --quiet --disable-pip-version-check -r functions/requirements.txt
	@touch $@

$(STAMP_DIR)/npm.stamp: package.json package-lock.json | $(STAMP_DIR)
	@echo "==> installing firebase-tools from package-lock.json (about a minute the first time)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_DIR)/sdk-js.stamp: sdk/js/package.json sdk/js/package-lock.json | $(STAMP_DIR)
	@echo "==> installing the JavaScript SDK's dev dependencies (firebase JS SDK for its tests)"
	@cd sdk/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP_DIR)/console-npm.stamp: console/package.json console/package-lock.json | $(STAMP_DIR)
	@echo "==> installing the console's build tools (Firebase JS SDK, esbuild) from console/package-lock.json"
	@cd console && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The console as Hosting serves it (console/dist, firebase.json "hosting"."public"). The stamp lives inside dist/, so
# a deleted build is rebuilt too.
CONSOLE_STAMP := console/dist/.build-stamp
CONSOLE_SOURCES := $(shell find console/src console/static -type f 2>/dev/null) console/build.mjs firebase.json .firebaserc
$(CONSOLE_STAMP): $(STAMP_DIR)/console-npm.stamp $(CONSOLE_SOURCES)
	@cd console && node build.mjs
	@touch $@

console: $(CONSOLE_STAMP)

# The browser tests (tests/browser) drive Debian's chromium: Playwright's own browser download cannot work offline.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "==> installing Debian's chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium is missing: run 'sudo apt-get install -y chromium', then make again" >&2; exit 1; \
		fi; }

install: $(STAMP_DIR)/venv.stamp $(STAMP_DIR)/functions-venv.stamp $(STAMP_DIR)/npm.stamp $(STAMP_DIR)/sdk-js.stamp \
	$(CONSOLE_STAMP)

dev: install
	@$(PY) scripts/stack.py dev

# The emulator runs no scheduled function; this is the local stack's Cloud Scheduler (scripts/local_scheduler.py).
schedules: install
	@$(PY) scripts/stack.py ensure -- $(PY) scripts/local_scheduler.py

# Every test that needs nothing running: the stack-free tiers, and the SDKs' unit tests (-m "not stack" leaves out
# the SDK tests that need the stack).
test-unit: $(STAMP_DIR)/venv.stamp
	@$(PY) -m pytest tests/unit tests/devservers sdk/python/tests -m "not stack" -q
	@node --test sdk/js/test/unit.test.js sdk/js/test/webhooks.test.js sdk/js/test/webhook-vectors.test.js

# Tiers: unit and dev-server tests, then integration and end-to-end tests against the real emulators, the SDKs'
# tests and the OpenAPI conformance run, all inside one stack that is stopped whatever the outcome.
test: install chromium
	@echo "==> make dev lifecycle: start, SIGTERM, no process or port left behind"
	@$(PY) scripts/check_lifecycle.py
	@$(PY) scripts/stack.py run -- bash -c '$(PY) -m pytest tests sdk/python/tests -q && \
		echo "==> JavaScript SDK tests" && (cd sdk/js && node --test --test-reporter=dot test/) && \
		npm --prefix sdk/js run --silent typecheck'

# KEEP=1 leaves the stack running afterwards, so the console (printed at the end) shows the demo's payments.
demo: install
	@if [ "$(KEEP)" = 1 ]; then $(PY) scripts/stack.py background; fi
	@$(PY) scripts/stack.py ensure -- $(PY) scripts/demo.py

lint: $(STAMP_DIR)/venv.stamp
	@$(PY) -m ruff check functions/gateway functions/main.py devservers scripts tests bench sdk/python
	@$(PY) -m mypy
	@cd sdk/python && ../../$(PY) -m mypy

# The browser tests save a screenshot of each console page under console/screenshots/ when asked.
screenshots: install chromium
	@$(PY) scripts/stack.py ensure -- env CONSOLE_SCREENSHOTS=1 $(PY) -m pytest tests/browser -q

bench: install
	@$(PY) scripts/stack.py ensure -- $(PY) bench/run.py

clean:
	rm -rf $(VENV) $(FUNCTIONS_VENV) node_modules sdk/js/node_modules console/node_modules console/dist $(STAMP_DIR)
