"""The whole vLLM route: CPU per output token of one request through vLLM 0.33.0's FastAPI app.

benches/vllm_route.py runs in the vLLM virtualenv as one subprocess (vLLM imports
in ~10 s) and measures every case in the same rounds: /v1/responses and
/v1/chat/completions, streamed and not, harmony-stream's plugin off and on, and
the bare route (the floor), at ``long_1k`` and ``long_12k`` and several tokens per
engine output. The table and the targets of issue 14 come at the end of the
session (benches/_report.py); here each case's output check is a test.
"""

from __future__ import annotations

from typing import Any

import pytest
from _common import VLLM_PYTHON, Store, route_cases, run_route_script


@pytest.fixture(scope="module")
def route_run(store: Store) -> dict[str, Any]:
    """The subprocess's JSON (or {"skip"/"error": why}); kept in the store for the report."""
    data = run_route_script(store, VLLM_PYTHON, "vllm_route.py", "whole-route", "vllm-venv")
    if "skip" in data or "error" in data:
        return data
    store.route = data
    load_before = data["load_before"]
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
    cases = route_cases(route_run, route_corpus, who)
    assert cases, f"no {who} case ran on {route_corpus}"
    failed = [f"{c['key']}: {c['problem']}" for c in cases if c["problem"] or not c["cpu"]]
    if who == "vllm":
        for f in failed:
            store.note(f"vLLM alone: {f}")
        return
    assert not failed, "; ".join(failed)
