"""The whole SGLang route: CPU per output token of one request through SGLang 0.5.23's FastAPI app.

benches/sglang_route.py runs in the SGLang virtualenv as one subprocess and
measures every case in the same rounds: ``/v1/responses`` streamed and not,
harmony-stream's plugin off and on, and the bare route (the floor). Each case's
output check is a test here; the figures go to the bench's notes (README,
Performance, quotes a full run's).
"""

from __future__ import annotations

from typing import Any

import pytest
from _common import SGLANG_PYTHON, Store, route_cases, run_route_script


@pytest.fixture(scope="module")
def sglang_run(store: Store) -> dict[str, Any]:
    """The subprocess's JSON (or {"skip"/"error": why})."""
    data = run_route_script(
        store, SGLANG_PYTHON, "sglang_route.py", "SGLang whole-route", "sglang-venv"
    )
    if "skip" in data or "error" in data:
        return data
    for case in data["cases"]:
        if case["cpu"] and not case["problem"]:
            us = min(case["cpu"]) / case["tokens"] * 1e6
            store.note(f"SGLang {data['sglang']} whole route {case['key']}: {us:.1f} µs/token")
    return data


@pytest.mark.parametrize("who", ["bare", "sglang", "plugin"])
def test_sglang_route(sglang_run: dict[str, Any], route_corpus: str, who: str) -> None:
    """Each case ran and its response carried the turn's messages (checked before
    it was timed)."""
    cases = route_cases(sglang_run, route_corpus, who)
    assert cases, f"no {who} case ran on {route_corpus}"
    failed = [f"{c['key']}: {c['problem']}" for c in cases if c["problem"] or not c["cpu"]]
    assert not failed, "; ".join(failed)


def test_sglang_route_streamed_costs_less_with_the_plugin(
    sglang_run: dict[str, Any], route_corpus: str
) -> None:
    """Target (a ratio, one process, the same rounds): a streamed /v1/responses
    token costs at most half of SGLang alone's with the plugin on (measured: a
    fifth at 1k tokens, a nineteenth at 12k)."""
    (on,) = [c for c in route_cases(sglang_run, route_corpus, "plugin") if c["key"].endswith("/1")]
    (off,) = [c for c in route_cases(sglang_run, route_corpus, "sglang") if c["key"].endswith("/1")]
    assert on["stream"]
    assert off["stream"]
    assert min(on["cpu"]) <= 0.5 * min(off["cpu"]), (on["cpu"], off["cpu"])
