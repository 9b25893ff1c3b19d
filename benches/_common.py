"""What every bench shares: the mode, the corpus, the paths and the results store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_stream.transcript import ModelTurn, ToolOutput, Transcript, parse_transcript

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benches"
CORPUS_DIR = ROOT / ".cache" / "bench_corpus"
VOCAB_DIR = ROOT / ".cache" / "tiktoken"
# The interpreter of the vLLM 0.33.0 virtualenv (its own: see docs/architecture.md, vLLM seam).
VLLM_PYTHON = Path(os.environ.get("HS_BENCH_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
# The interpreter of the SGLang 0.5.23 virtualenv (`make sglang-venv`).
SGLANG_PYTHON = Path(
    os.environ.get("HS_BENCH_SGLANG_PYTHON", ROOT / ".venv-sglang" / "bin" / "python")
)

# The paths, in table order: key -> label.
PATHS = {
    "hs_sse": "(1) harmony-stream feed_sse([tok])",
    "hs_events": "(1b) harmony-stream feed([tok]) + to_sse()",
    "hs_batch": "(2) harmony-stream feed_batch x256",
    "oh_pydantic": "(3) openai-harmony + openai models",
    "vllm": "(4) vLLM 0.33.0 path",
    "vllm_plugin": "(5) vLLM 0.33.0 + harmony-stream plugin",
}
BASELINE_3, BASELINE_4 = "oh_pydantic", "vllm"
VLLM_PLUGIN = "vllm_plugin"
BATCH_STREAMS = 256


@dataclass(frozen=True)
class Mode:
    """Full (by hand) or short (CI): which corpora, how long to time each."""

    short: bool

    @property
    def name(self) -> str:
        return "short" if self.short else "full"

    @property
    def results_dir(self) -> Path:
        # The short run must not rewrite the committed full-run results.
        return ROOT / ".cache" / "bench_short" if self.short else BENCH_DIR / "results"

    @property
    def budget(self) -> float:
        """Seconds of timed rounds per path and corpus (after one untimed run)."""
        return 0.3 if self.short else 2.0

    @property
    def min_rounds(self) -> int:
        return 1 if self.short else 3

    @property
    def max_rounds(self) -> int:
        return 5 if self.short else 50

    @property
    def route_corpora(self) -> tuple[str, ...]:
        """The whole-route bench's corpora (their last model turn is the request)."""
        return ("long_1k",) if self.short else ("long_1k", "long_12k")

    @property
    def route_steps(self) -> tuple[int, ...]:
        """Tokens per engine output the whole-route bench streams with."""
        return (1,) if self.short else (1, 4, 16)

    @property
    def route_rounds(self) -> int:
        """Timed rounds of the whole-route bench (every case once per round)."""
        return 3 if self.short else 5

    def rounds_for(self, first_run_seconds: float) -> int:
        n = int(self.budget / max(first_run_seconds, 1e-9))
        return max(self.min_rounds, min(self.max_rounds, n))


@dataclass
class Corpus:
    name: str
    kind: str  # "named" | "length"
    num_tokens: int
    path: Path
    transcript: Transcript
    expected: list[dict[str, Any]]
    tools: list[dict[str, Any]]

    def turns_for_feeding(self) -> list[list[list[int]] | tuple[str | None, str | None]]:
        """Model turns as one-token lists (one engine step each); tool outputs as tuples."""
        out: list[list[list[int]] | tuple[str | None, str | None]] = []
        for turn in self.transcript.turns:
            if isinstance(turn, ModelTurn):
                out.append([[t] for t in turn.tokens])
            elif isinstance(turn, ToolOutput):
                out.append((turn.output, turn.error))
        return out

    def turns_raw(self) -> list[list[int] | tuple[str | None, str | None]]:
        out: list[list[int] | tuple[str | None, str | None]] = []
        for turn in self.transcript.turns:
            if isinstance(turn, ModelTurn):
                out.append(list(turn.tokens))
            elif isinstance(turn, ToolOutput):
                out.append((turn.output, turn.error))
        return out

    @property
    def finish_reason(self) -> str:
        turns = self.transcript.model_turns
        return turns[-1].finish_reason if turns else "stop"

    @property
    def output_text_bytes(self) -> int:
        """UTF-8 bytes of the rendered message texts: what the response must hold."""
        return sum(len(e["text"].encode()) for e in self.expected)


def generate_corpus(mode: Mode) -> list[Corpus]:
    """Runs scripts/make_bench_corpus.py (deterministic, rewrites only what changed)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "make_bench_corpus.py"), "-q"]
    cmd += ["--out", str(CORPUS_DIR)] + (["--short"] if mode.short else [])
    env = dict(os.environ)
    env.setdefault("TIKTOKEN_ENCODINGS_BASE", str(VOCAB_DIR))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"make_bench_corpus.py failed:\n{proc.stderr}")
    index = json.loads((CORPUS_DIR / "index.json").read_text(encoding="utf-8"))
    return [load_corpus(entry["name"]) for entry in index]


def load_corpus(name: str) -> Corpus:
    path = CORPUS_DIR / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return Corpus(
        name=name,
        kind=data["kind"],
        num_tokens=data["num_tokens"],
        path=path,
        transcript=parse_transcript(data, str(path)),
        expected=data["expected"],
        tools=data["tools"],
    )


@dataclass
class Result:
    """One path on one corpus."""

    path: str
    corpus: str
    tokens: int  # output tokens per round (x streams for the batch path)
    wall: list[float] = field(default_factory=list)  # seconds per round
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per round
    ok: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def cpu_ratio(self) -> float:
        """Process CPU time over wall time (> 1: more than one core was busy)."""
        w = sum(self.wall)
        return sum(self.cpu) / w if w and self.cpu else 1.0

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second per core: best round, divided by the cores it kept busy."""
        return self.tokens / self.best / max(1.0, self.cpu_ratio)

    @property
    def us_per_token(self) -> float:
        return 1e6 / self.tokens_per_s

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": PATHS.get(self.path, self.path),
            "corpus": self.corpus,
            "tokens_per_round": self.tokens,
            "rounds": len(self.wall),
            "best_s": self.best,
            "median_s": sorted(self.wall)[len(self.wall) // 2],
            "cpu_over_wall": round(self.cpu_ratio, 3),
            "tokens_per_s_per_core": self.tokens_per_s,
            "us_per_token": self.us_per_token,
            "ok": self.ok,
            "note": self.note,
            **self.extra,
        }


@dataclass
class Store:
    """Everything measured in this run; the report reads it at the end of the session."""

    mode: Mode
    corpora: dict[str, Corpus] = field(default_factory=dict)
    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    route: dict[str, Any] = field(default_factory=dict)  # benches/vllm_route.py's output
    notes: list[str] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.results[(result.path, result.corpus)] = result

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def run_route_script(
    store: Store, python: Path, script: str, what: str, make_target: str
) -> dict[str, Any]:
    """Run the whole-route bench `script` (in benches/) with the server virtualenv's
    `python` on the mode's route corpora and steps, as one subprocess; the JSON it
    writes, with ``load_before`` (the load average before it), or {"skip"/"error":
    why}, also noted in the store. `what` names the bench in those notes."""
    if not python.exists():
        msg = f"{what} bench skipped: {python} is absent (make {make_target})"
        store.note(msg)
        return {"skip": msg}
    names = [n for n in store.mode.route_corpora if n in store.corpora]
    cmd = [
        str(python),
        str(BENCH_DIR / script),
        "--corpus-dir", str(CORPUS_DIR),
        "--names", ",".join(names),
        "--steps", ",".join(str(s) for s in store.mode.route_steps),
        "--rounds", str(store.mode.route_rounds),
    ]  # fmt: skip
    load_before = os.getloadavg()
    data = run_json_script(store, cmd, f"{what} bench")
    if "error" not in data:
        data["load_before"] = list(load_before)
    return data


def run_json_script(store: Store, cmd: list[str], what: str) -> dict[str, Any]:
    """Run `cmd` (a bench script in a server's virtualenv, the vocabulary's place in
    its environment) as one subprocess; the JSON object on its last stdout line, or
    {"error": why} (also noted in the store) if it failed or wrote nothing."""
    env = dict(os.environ)
    env.setdefault("TIKTOKEN_ENCODINGS_BASE", str(VOCAB_DIR))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        msg = f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        store.note(msg)
        return {"error": msg}
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def route_cases(run: dict[str, Any], corpus: str, who: str) -> list[dict[str, Any]]:
    """The cases of a whole-route run (run_route_script) on `corpus` whose key's WHO
    is `who`; the test skipped or failed if the run was."""
    import pytest

    if "skip" in run:
        pytest.skip(run["skip"])
    if "error" in run:
        pytest.fail(run["error"], pytrace=False)
    return [c for c in run["cases"] if c["corpus"] == corpus and f"/{who}/" in c["key"]]
