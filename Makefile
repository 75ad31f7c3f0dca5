PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One venv, filled as far as the target needs: `make run` installs only what the demo serves
# (modelport's server and scikit-learn); `make run-embeddings` adds torch; `make test`,
# `make check` and `make bench` install everything (tools, benchmark baselines, OpenAI SDK).
RUN_STAMP := $(VENV)/.installed-run
EMBEDDINGS_STAMP := $(VENV)/.installed-embeddings
STAMP := $(VENV)/.installed
# The CPU build of torch, installed on its own first (this machine keeps its wheel on disk),
# so the embeddings extra does not pull the default CUDA build.
TORCH := torch==2.13.0
PORT ?= 8000

.PHONY: install run run-embeddings test check bench load-generator valgrind browser node clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[server,examples,media]'
	touch $@

$(EMBEDDINGS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[server,examples,embeddings]'
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[server,redis,cli,parquet,examples,media,video,embeddings,bench,dev]'
	touch $@ $(RUN_STAMP) $(EMBEDDINGS_STAMP)

install: $(STAMP) browser

run: $(RUN_STAMP)  ## serve the iris demo on http://127.0.0.1:8000 (installs only what it needs)
	$(BIN)/modelport serve examples/iris/model.py examples/echo/model.py examples/txt2img/model.py \
		examples/textgen/model.py examples/digits/model.py examples/painter/model.py \
		examples/audio/model.py --port $(PORT)

run-embeddings: $(EMBEDDINGS_STAMP)  ## serve the torch example (all-MiniLM-L6-v2) on port 8000
	$(BIN)/modelport serve examples/embeddings/model.py --port $(PORT)

# The tests run on TEST_JOBS processes (this machine has two cores), each taking a whole file
# at a time, so that its module fixtures start once: 8 minutes here, where one process took
# 13. TEST_JOBS=0 runs them in this process, one after another, as a plain `pytest` does.
TEST_JOBS ?= 2
test: $(STAMP) browser node  ## install everything and run every test
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile

# mypy twice: the package, the examples and the bench models from the root; the benchmark
# scripts from bench/, where they import their siblings (_load, _servers) as top-level modules.
# There bench/queue.py stands for the standard library's queue, so the modules they import
# (checked by the first run) are followed silently.
check: $(STAMP)  ## ruff + mypy
	$(BIN)/ruff check modelport tests bench examples
	$(BIN)/ruff format --check modelport tests bench examples
	$(BIN)/mypy
	cd bench && MYPYPATH=..:apps ../$(BIN)/mypy --config-file ../pyproject.toml --follow-imports=silent \
		*.py apps/*.py

bench: $(STAMP) load-generator valgrind  ## benchmarks against plain FastAPI and LitServe
	$(BIN)/python bench/overhead.py --rounds 3 --auth keys
	$(BIN)/python bench/overhead.py --rounds 3 --connections 1
	@if command -v valgrind >/dev/null; then $(BIN)/python bench/instructions.py ; \
		else echo "valgrind is not installed: bench/instructions.py skipped"; fi
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/remote.py --rounds 3
	$(BIN)/python bench/streaming.py
	$(BIN)/python bench/queue.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/media.py
	$(BIN)/python bench/pipe.py
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/chat_page.py
	$(BIN)/python bench/admin_page.py
	$(BIN)/python bench/adapters.py --rounds 3

# wrk drives the HTTP benchmarks when it is there (Debian's package); without it they use
# their own asyncio load generator, which needs more CPU for the same load.
load-generator:
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -q wrk >/dev/null; } \
		|| echo "wrk is not installed: the benchmarks use their asyncio load generator"

APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q

# valgrind counts instructions for bench/instructions.py (Debian's package).
valgrind:
	@command -v valgrind >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& $(APT_INSTALL) valgrind >/dev/null; } \
		|| echo "valgrind is not installed: bench/instructions.py cannot run"

# Debian's chromium for the browser tests: Playwright drives it by path and never downloads
# a browser of its own. Without it (not root, no apt-get) those tests skip, or fail with CI=true.
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& { $(APT_INSTALL) chromium >/dev/null \
		     || { apt-get update -q >/dev/null && $(APT_INSTALL) chromium >/dev/null; }; }; } \
		|| echo "chromium is not installed: the browser tests skip (and fail with CI=true)"

# Node.js (18 or later) and npm run the JavaScript client's tests (clients/js) and npm pack.
node:
	@command -v node >/dev/null && command -v npm >/dev/null \
		|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& { $(APT_INSTALL) nodejs npm >/dev/null \
		     || { apt-get update -q >/dev/null && $(APT_INSTALL) nodejs npm >/dev/null; }; }; } \
		|| echo "node is not installed: the JavaScript client's tests skip (and fail with CI=true)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.db *.db-wal *.db-shm *.db.lock
