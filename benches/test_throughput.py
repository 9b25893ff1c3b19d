"""Throughput of every path on every corpus, in one process and one run.

Each test first runs its path once untimed and checks the output (correctness
beside speed), then times whole responses with pytest-benchmark. The vLLM
baseline runs in its own virtualenv as one subprocess for all corpora.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from _common import BASELINE_4, CORPUS_DIR, VLLM_PLUGIN, VLLM_PYTHON, Result, Store, run_json_script
from _paths import PATH_CLASSES, HsSse

# The per-token SSE body of each corpus: the reference the other harmony-stream paths
# must reproduce byte for byte (same id_seed and created_at).
_REFERENCE: dict[str, tuple[bytes, bool, str]] = {}


def _reference(
    store: Store, vocab: Any, encoding: Any, corpus_name: str
) -> tuple[bytes, bool, str]:
    if corpus_name not in _REFERENCE:
        path = HsSse(vocab, encoding)
        corpus = store.corpora[corpus_name]
        body = path.body(corpus)
        try:
            ok, note = path.verify(corpus, None)
        except AssertionError as e:
            ok, note = False, str(e)[:200]
        _REFERENCE[corpus_name] = (body, ok, note)
    return _REFERENCE[corpus_name]


def _timed(
    benchmark: Any, store: Store, fn_setup: Any, first: float
) -> tuple[list[float], list[float]]:
    """pytest-benchmark rounds (1 iteration each, fresh set-up each); CPU time beside."""
    cpu: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (fn_setup(),), {}

    def timed(run: Any) -> None:
        c0 = time.process_time()
        run()
        cpu.append(time.process_time() - c0)

    rounds = store.mode.rounds_for(first)
    benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    return list(benchmark.stats.stats.data), cpu


@pytest.mark.parametrize("path_key", list(PATH_CLASSES))
def test_path(
    benchmark: Any, store: Store, vocab: Any, encoding: Any, corpus_name: str, path_key: str
) -> None:
    corpus = store.corpora[corpus_name]
    path = PATH_CLASSES[path_key](vocab, encoding)
    benchmark.group = corpus_name
    benchmark.name = path_key
    result = Result(path=path_key, corpus=corpus_name, tokens=path.tokens(corpus))
    store.add(result)
    try:
        prepare = path.prepare
        t0 = time.perf_counter()
        run = prepare(corpus)
        run()  # untimed first run: warm-up, and the length of a round
        first = time.perf_counter() - t0
    except RuntimeError as e:  # feed_batch missing: a clear message, not a crash trace
        result.note = str(e)
        store.note(f"{path_key}: {e}")
        pytest.fail(str(e), pytrace=False)

    ref_body, ref_ok, ref_note = _reference(store, vocab, encoding, corpus_name)
    if path_key == "hs_sse":
        ok, note = ref_ok, ref_note
    else:
        try:
            ok, note = path.verify(corpus, ref_body if ref_ok else None)
        except AssertionError as e:
            ok, note = False, str(e)[:200]
    result.ok, result.note = ok, note

    result.wall, result.cpu = _timed(benchmark, store, lambda: path.prepare(corpus), first)
    benchmark.extra_info.update(
        tokens_per_round=result.tokens,
        tokens_per_s_per_core=round(result.tokens_per_s),
        ok=ok,
    )
    assert ok, f"{path_key} on {corpus_name}: {note}"


# --------------------------------------------------------------------------- vLLM


@pytest.fixture(scope="module")
def vllm_run(store: Store) -> dict[str, Any]:
    """One subprocess in the vLLM virtualenv measures every corpus (vLLM imports in ~6-10 s)."""
    if not VLLM_PYTHON.exists():
        msg = f"vLLM baseline skipped: {VLLM_PYTHON} is absent (make a venv with vllm==0.33.0)"
        store.note(msg)
        return {"skip": msg}
    names = list(store.corpora)
    cmd = [
        str(VLLM_PYTHON),
        str(CORPUS_DIR.parent.parent / "benches" / "vllm_path.py"),
        "--corpus-dir", str(CORPUS_DIR),
        "--names", ",".join(names),
        "--budget", str(store.mode.budget),
        "--min-rounds", str(store.mode.min_rounds),
        "--max-rounds", str(store.mode.max_rounds),
        "--plugin",
    ]  # fmt: skip
    data = run_json_script(store, cmd, "vLLM baseline")
    if "error" in data:
        return data
    store.note(
        f"vLLM {data['vllm']} (Python {data['python']}) ran in {VLLM_PYTHON.parent.parent}; "
        f"its import took {data['import_seconds']:.1f} s (not timed)"
    )
    return data


def test_vllm_path(store: Store, vllm_run: dict[str, Any], corpus_name: str) -> None:
    from _checks import compare_items

    if "skip" in vllm_run:
        pytest.skip(vllm_run["skip"])
    if "error" in vllm_run:
        pytest.fail(vllm_run["error"], pytrace=False)
    corpus = store.corpora[corpus_name]
    result = Result(path=BASELINE_4, corpus=corpus_name, tokens=corpus.num_tokens)
    store.add(result)
    if corpus_name in vllm_run["errors"]:
        result.ok, result.note = False, vllm_run["errors"][corpus_name][:200]
        pytest.fail(f"vLLM failed on {corpus_name}: {result.note}", pytrace=False)
    r = vllm_run["results"][corpus_name]
    result.wall, result.cpu = r["wall"], r["cpu"]
    # vLLM's item types differ by design (browser as mcp_call, ...): compare texts only.
    problems = compare_items(
        [tuple(x) for x in r["items"]], corpus.expected, corpus.tools, check_types=False
    )
    result.ok = not problems
    result.note = "; ".join(problems[:2])
    result.extra = {"events": r["events"], "sse_bytes": r["sse_bytes"]}
    # A baseline's own defects are reported in the table, not failed on.


def test_vllm_plugin_path(store: Store, vllm_run: dict[str, Any], corpus_name: str) -> None:
    """(5): the same response through vLLM with harmony-stream's plugin installed."""
    from _checks import compare_items

    if "skip" in vllm_run:
        pytest.skip(vllm_run["skip"])
    if "error" in vllm_run:
        pytest.fail(vllm_run["error"], pytrace=False)
    errors = vllm_run.get("plugin_errors") or {}
    corpus = store.corpora[corpus_name]
    result = Result(path=VLLM_PLUGIN, corpus=corpus_name, tokens=corpus.num_tokens)
    store.add(result)
    error = errors.get(corpus_name) or errors.get("*")
    if error:
        result.ok, result.note = False, error[:200]
        pytest.fail(f"vLLM + plugin failed on {corpus_name}: {error}", pytrace=False)
    r = vllm_run["plugin_results"][corpus_name]
    result.wall, result.cpu = r["wall"], r["cpu"]
    # The plugin's items come from the engine: kinds and texts must be the corpus's.
    problems = compare_items([tuple(x) for x in r["items"]], corpus.expected, corpus.tools)
    result.ok = not problems
    result.note = "; ".join(problems[:2])
    result.extra = {"events": r["events"], "sse_bytes": r["sse_bytes"]}
    assert result.ok, f"vLLM + plugin on {corpus_name}: {result.note}"
