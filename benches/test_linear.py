"""Cost per token at 20k and at 400k tokens, for every class of token run.

The classes (undecodable byte runs of every kind, plain text, a header that never
closes, quirk runs, many short messages) are those of ``tests/test_linear_time.py``,
which asserts the bound; here each is timed with pytest-benchmark at both lengths in
the same run, and the report lists the ratio (target: 1.0, i.e. the same cost per
token at any length; the test fails above 3).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from _common import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_linear_time import CLASSES, _run  # type: ignore[import-not-found]  # tests/

LENGTHS = (20_000, 400_000)
_PER_TOKEN: dict[tuple[str, int], float] = {}


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("name", list(CLASSES))
def test_linear(benchmark: Any, store: Store, vocab: Any, name: str, n: int) -> None:
    run = _run(vocab, *CLASSES[name])
    run(2_000)  # warm up
    rounds = 3 if store.mode.short else 10
    benchmark.pedantic(run, args=(n,), rounds=rounds, iterations=1, warmup_rounds=0)
    per_token = float(benchmark.stats.stats.min) / n
    benchmark.extra_info["ns_per_token"] = per_token * 1e9
    _PER_TOKEN[(name, n)] = per_token
    short, long_ = (_PER_TOKEN.get((name, k)) for k in LENGTHS)
    if short is not None and long_ is not None:
        store.note(
            f"linear time, {name}: {short * 1e9:.0f} ns/token at 20k, "
            f"{long_ * 1e9:.0f} at 400k (x{long_ / short:.2f})"
        )
