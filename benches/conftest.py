"""pytest-benchmark set-up for `pytest benches/` (the normal `pytest` run never collects it).

Short mode (CI): ``--bench-short`` or ``HS_BENCH_SHORT=1``. The table, the
targets, results.json and throughput.png come at the end of the session:
benches/results/ in full mode, .cache/bench_short/ in short mode.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import VOCAB_DIR, Mode, Store, generate_corpus

os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(VOCAB_DIR))

_STORE_KEY = pytest.StashKey[Store]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harmony-stream bench")
    group.addoption(
        "--bench-short",
        action="store_true",
        default=False,
        help="short mode: small corpus, few rounds (also HS_BENCH_SHORT=1)",
    )


def _mode(config: pytest.Config) -> Mode:
    env = os.environ.get("HS_BENCH_SHORT", "").strip().lower() not in ("", "0", "false", "no")
    return Mode(short=bool(config.getoption("--bench-short")) or env)


def pytest_configure(config: pytest.Config) -> None:
    mode = _mode(config)
    store = Store(mode=mode)
    store.corpora = {c.name: c for c in generate_corpus(mode)}
    config.stash[_STORE_KEY] = store


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    store = metafunc.config.stash[_STORE_KEY]
    if "corpus_name" in metafunc.fixturenames:
        metafunc.parametrize("corpus_name", list(store.corpora))
    if "route_corpus" in metafunc.fixturenames:  # the whole-route bench's (test_route.py)
        names = [n for n in store.mode.route_corpora if n in store.corpora]
        metafunc.parametrize("route_corpus", names)


@pytest.fixture(scope="session")
def store(request: pytest.FixtureRequest) -> Store:
    return request.config.stash[_STORE_KEY]


@pytest.fixture(scope="session")
def vocab() -> Any:
    import harmony_stream as hs

    return hs.Vocab.load()


@pytest.fixture(scope="session")
def encoding() -> Any:
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    store = config.stash.get(_STORE_KEY, None)
    if store is None or not (store.results or store.memory or store.notes):
        return
    from _report import report

    report(store, terminalreporter.write_line)
