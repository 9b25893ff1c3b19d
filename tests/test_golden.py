"""The golden files (tests/data/golden), read by pytest as by the Rust tests.

Each file holds a token stream and what openai-harmony 0.0.8 did with it, recorded by
scripts/record_golden.py. Two checks: the recording still matches the oracle (so the
files cannot drift from it), and our parser follows the strict/lenient rules on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harmony_stream import Vocab

from _harness import INTENTIONAL_FIXES, Run, run_oracle, run_ours
from conftest import DATA

GOLDEN = sorted((DATA / "golden").glob("*.json"))


def _recorded(mode: dict[str, Any]) -> tuple[list[str | None], int | None, list[dict[str, Any]]]:
    return mode["deltas"], mode["error_index"], mode["messages"]


def _as_recorded(run: Run) -> tuple[list[str | None], int | None, list[dict[str, Any]]]:
    msgs = [
        {
            "role": m["role"],
            "name": m.get("name"),
            "channel": m.get("channel"),
            "recipient": m.get("recipient"),
            "content_type": m.get("content_type"),
            "content": m["content"][0]["text"],
        }
        for m in run.messages
    ]
    return run.deltas, run.error_index, msgs


def test_golden_folder_is_populated() -> None:
    assert len(GOLDEN) >= 20


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden(path: Path, enc: Any, vocab: Vocab) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    tokens = case["tokens"]
    assert case["oracle"] == "openai-harmony==0.0.8"
    # The file is what the oracle does today.
    assert _as_recorded(run_oracle(enc, tokens, strict=True)) == _recorded(case["strict"])
    assert _as_recorded(run_oracle(enc, tokens, strict=False)) == _recorded(case["non_strict"])
    # Strict: the same as the oracle.
    assert _as_recorded(run_ours(vocab, tokens, strict=True)) == _recorded(case["strict"])
    # Lenient: never an error; the same as the oracle's non-strict run where it succeeded.
    lax = run_ours(vocab, tokens, strict=False)
    assert lax.error_index is None
    if case["non_strict"]["error_index"] is None and not INTENTIONAL_FIXES.intersection(
        lax.recoveries
    ):
        assert _as_recorded(lax) == _recorded(case["non_strict"])
