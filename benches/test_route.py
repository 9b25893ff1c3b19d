"""The whole vLLM route: CPU per output token of one request through vLLM 0.33.0's FastAPI app.

benches/vllm_route.py runs in the vLLM virtualenv as one subprocess (vLLM imports
in ~10 s) and measures every case in the same rounds: /v1/responses and
/v1/chat/completions, streamed and not, harmony-stream's plugin off and on, and
the bare route (the floor), at ``long_1k`` and ``long_12k`` and several tokens per
engine output. The table and the targets of issue 14 come at the end of the
session (benches/_report.py); here each case's output check is a test.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from _common import BENCH_DIR, CORPUS_DIR, VLLM_PYTHON, VOCAB_DIR, Store


@pytest.fixture(scope="module")
def route_run(store: Store) -> dict[str, Any]:
    """The subprocess's JSON (or {"skip"/"error": why}); kept in the store for the report."""
    if not VLLM_PYTHON.exists():
        msg = f"whole-route bench skipped: {VLLM_PYTHON} is absent (make vllm-venv)"
        store.note(msg)
        return {"skip": msg}
    names = [n for n in store.mode.route_corpora if n in store.corpora]
    cmd = [
        str(VLLM_PYTHON),
        str(BENCH_DIR / "vllm_route.py"),
        "--corpus-dir", str(CORPUS_DIR),
        "--names", ",".join(names),
        "--steps", ",".join(str(s) for s in store.mode.route_steps),
        "--rounds", str(store.mode.route_rounds),
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("TIKTOKEN_ENCODINGS_BASE", str(VOCAB_DIR))
    load_before = os.getloadavg()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        msg = f"whole-route bench failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        store.note(msg)
        return {"error": msg}
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    data["load_before"] = list(load_before)
    store.route = data
    store.note(
        f"whole route: vLLM {data['vllm']} in {VLLM_PYTHON.parent.parent}, harmony-stream "
        f"{data['harmony_stream']}; load average {load_before[0]:.1f} before, "
        f"{data['load_after'][0]:.1f} after (a shared machine: other jobs ran)"
    )
    return data


@pytest.mark.parametrize("who", ["bare", "vllm", "plugin"])
def test_route(store: Store, route_run: dict[str, Any], route_corpus: str, who: str) -> None:
    """Each case's response carried the turn's messages (checked before it was timed).

    vLLM alone is the baseline: its defects are reported in the table, not failed on.
    """
    if "skip" in route_run:
        pytest.skip(route_run["skip"])
    if "error" in route_run:
        pytest.fail(route_run["error"], pytrace=False)
    cases = [
        c for c in route_run["cases"] if c["corpus"] == route_corpus and f"/{who}/" in c["key"]
    ]
    assert cases, f"no {who} case ran on {route_corpus}"
    failed = [f"{c['key']}: {c['problem']}" for c in cases if c["problem"] or not c["cpu"]]
    if who == "vllm":
        for f in failed:
            store.note(f"vLLM alone: {f}")
        return
    assert not failed, "; ".join(failed)
