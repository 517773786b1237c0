# `make run`: set up and serve the embedded default model on :8080.
# `make test`: set up and run every test (what .ci/run calls).
# `make test-fast`: unit and integration tests only, for the edit loop.
# `make demo`: the demo page and a function that allows it, on :8001 and :8090.
# `make emulators` / `make batch-setup`: the optional parts' own installs.
# `make docs`: the documentation site (docs/) on :8002.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# The development server unpickles models: reachable from this machine only,
# unless HOST says otherwise (HOST=0.0.0.0 make run).
HOST ?= 127.0.0.1
WEB_PORT ?= 8000

DEMO_PORT ?= 8090
DEMO_WEB_PORT ?= 8001
DOCS_PORT ?= 8002
PIP := $(BIN)/python -m pip --disable-pip-version-check
# setuptools' advice on editable installs ("be careful with folders ... with
# the same name as your package"): here those folders are the packages.
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: run demo web docs emulators batch-setup chromium wrk test test-fast lint format \
	bench clean

# What serving and training need: the function's pins, the trainer's, and the
# two packages themselves (editable, from function/ and train/).
$(BIN)/.installed-run: function/requirements.txt train/requirements.txt pyproject.toml
	@echo "make: setting up $(VENV) with the function's and the trainer's pins (a minute or two, once)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --progress-bar off -r train/requirements.txt
	$(QUIET_EDITABLE) $(PIP) install --quiet --no-deps -e .
	touch $@

# Everything to develop and test, on top of that.
$(BIN)/.installed: $(BIN)/.installed-run requirements.txt batch/requirements.txt infra/local/requirements.txt docs/requirements.txt
	@echo "make: adding the test tools to $(VENV) (a few minutes, once)"
	$(PIP) install --quiet -r requirements.txt
	touch $@

# The S3 and GCS emulators alone (moto_server, gcp-storage-emulator).
$(BIN)/.installed-emulators: $(BIN)/.installed-run infra/local/requirements.txt
	@echo "make: adding the store emulators to $(VENV)"
	$(PIP) install --quiet -r infra/local/requirements.txt
	touch $@

emulators: $(BIN)/.installed-emulators

# MkDocs and its Material theme alone, for `make docs`.
$(BIN)/.installed-docs: $(BIN)/.installed-run docs/requirements.txt
	@echo "make: adding MkDocs to $(VENV)"
	$(PIP) install --quiet -r docs/requirements.txt
	touch $@

# The documentation site, rebuilt as its pages change (Ctrl-C stops it).
docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

# Apache Beam alone, for `python -m batch`.
$(BIN)/.installed-batch: $(BIN)/.installed-run batch/requirements.txt
	@echo "make: adding Apache Beam to $(VENV) (a minute or two, once)"
	$(PIP) install --quiet -r batch/requirements.txt
	touch $@

batch-setup: $(BIN)/.installed-batch

# The Serverless Framework CLI (osls) and its Python plugin, for serverless.yml.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --cache .cache/npm
	touch $@

model-store/default/LATEST: | $(BIN)/.installed-run
	$(BIN)/python -m train

# Serves in the foreground (Ctrl-C stops it) and says so once it answers.
run: $(BIN)/.installed-run model-store/default/LATEST
	@$(BIN)/python infra/local/serve.py --host $(HOST) --port $(PORT)

# The demo page and a function that allows it, on ports beside `make run`'s.
demo: $(BIN)/.installed-run model-store/default/LATEST
	@$(BIN)/python infra/local/serve.py --host $(HOST) --port $(DEMO_PORT) \
		--page-port $(DEMO_WEB_PORT)

# The demo page (web/) on :$(WEB_PORT) beside `make run`; start the function with
# CORS_ALLOW_ORIGINS=http://127.0.0.1:$(WEB_PORT) so the page may call it.
web:
	$(PYTHON) -m http.server $(WEB_PORT) --bind 127.0.0.1 --directory web

# Chromium and its driver from Debian, for the browser tests; a no-op once there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; \
	fi

# wrk, the load generator of `make bench` (and of its test), from Debian.
wrk:
	@if [ ! -x /usr/bin/wrk ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint node_modules/.installed chromium wrk
	$(BIN)/python -m pytest

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit tests/integration -m "not slow" -q -n 2

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/.installed wrk
	$(BIN)/python bench/coldstart.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) model-store .pytest_cache
