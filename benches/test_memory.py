"""Bytes retained per stream: idle, and after 1k / 12k / 47k output tokens.

Each case runs in a fresh interpreter (benches/memory_probe.py); the numbers go
to the report beside the targets (<= 2 bytes per output byte, < 8 KiB idle).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _common import Store

PROBE = Path(__file__).resolve().parent / "memory_probe.py"

# case -> streams held at once (enough that RSS growth dwarfs page-size noise).
CASES = {
    "idle": 4000,
    "idle_started": 4000,
    "long_1k": 400,
    "long_12k": 100,
    "long_47k": 30,
}


@pytest.mark.parametrize("case", list(CASES))
def test_memory(store: Store, case: str) -> None:
    if case.startswith("long_") and case not in store.corpora:
        pytest.skip(f"{case} is not in this mode's corpus")
    proc = subprocess.run(
        [sys.executable, str(PROBE), "--case", case, "--streams", str(CASES[case])],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"memory probe {case} failed:\n{proc.stderr[-2000:]}", pytrace=False)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    store.memory.setdefault("cases", {})[case] = result
    store.memory["method"] = (
        "fresh process per case; RSS (psutil) and tracemalloc deltas over N streams held "
        "at once, after a warm-up response; output bytes = UTF-8 bytes of the rendered "
        "message texts; the ratio uses the larger of before/after finish"
    )
