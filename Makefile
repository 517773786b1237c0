# `make run`: set up and serve the embedded default model on :8080.
# `make test`: set up and run every test (what .ci/run calls).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint format bench clean

$(BIN)/.installed: requirements.txt function/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# The Serverless Framework CLI (osls) and its Python plugin, for serverless.yml.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --cache .cache/npm
	touch $@

model-store/default/LATEST: | $(BIN)/.installed
	$(BIN)/python -m train

run: $(BIN)/.installed model-store/default/LATEST
	$(BIN)/functions-framework --source function/main.py --target predict --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: lint node_modules/.installed
	$(BIN)/python -m pytest

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/.installed
	$(BIN)/python bench/coldstart.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) model-store .pytest_cache
