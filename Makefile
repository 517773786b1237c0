# `make run`: set up and serve the embedded default model on :8080.
# `make test`: set up and run every test (what .ci/run calls).
# `make test-fast`: unit and integration tests only, for the edit loop.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
WEB_PORT ?= 8000

.PHONY: run web test test-fast lint format bench clean

# What serving and training need: the function's pins, the trainer's, and the
# two packages themselves (editable, from function/ and train/).
$(BIN)/.installed-run: function/requirements.txt train/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r train/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Everything to develop and test, on top of that.
$(BIN)/.installed: $(BIN)/.installed-run requirements.txt
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# The Serverless Framework CLI (osls) and its Python plugin, for serverless.yml.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --cache .cache/npm
	touch $@

model-store/default/LATEST: | $(BIN)/.installed-run
	$(BIN)/python -m train

run: $(BIN)/.installed-run model-store/default/LATEST
	$(BIN)/functions-framework --source function/main.py --target predict --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint node_modules/.installed
	$(BIN)/python -m pytest

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit tests/integration -m "not slow" -q

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/.installed
	$(BIN)/python bench/coldstart.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) model-store .pytest_cache
