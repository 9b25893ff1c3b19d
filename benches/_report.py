"""The end of a bench run: the table, the targets of issue 5, the JSON and the plot."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import BASELINE_3, BASELINE_4, PATHS, Result, Store

KIB = 1024


def _fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:8.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:8.1f} k"
    return f"{x:8.0f}  "


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "      -"
    return f"{r:6.1f}x" if r < 1000 else f"{r:6.0f}x"


def corpus_order(store: Store) -> list[str]:
    named = [c.name for c in store.corpora.values() if c.kind == "named"]
    lengths = sorted(
        (c for c in store.corpora.values() if c.kind == "length"), key=lambda c: c.num_tokens
    )
    return named + [c.name for c in lengths]


def table(store: Store) -> list[str]:
    lines = [
        f"{'path':44s} {'corpus':11s} {'tokens':>8s} {'tokens/s/core':>13s} "
        f"{'us/token':>9s} {'vs (3)':>7s} {'vs (4)':>7s}  ok",
    ]
    lines.append("-" * len(lines[0]))
    for corpus in corpus_order(store):
        b3 = store.results.get((BASELINE_3, corpus))
        b4 = store.results.get((BASELINE_4, corpus))
        for path in PATHS:
            r = store.results.get((path, corpus))
            if r is None or not r.wall:
                continue
            vs3 = r.tokens_per_s / b3.tokens_per_s if b3 and b3.wall else None
            vs4 = r.tokens_per_s / b4.tokens_per_s if b4 and b4.wall else None
            ok = {True: "yes", False: "NO", None: "-"}[r.ok]
            lines.append(
                f"{PATHS[path]:44s} {corpus:11s} {r.tokens:8d} {_fmt_rate(r.tokens_per_s):>13s} "
                f"{r.us_per_token:9.3f} {_fmt_ratio(vs3)} {_fmt_ratio(vs4)}  {ok}"
                + (f"  ({r.note})" if r.note else "")
            )
        lines.append("")
    return lines


def _get(store: Store, path: str, corpus: str) -> Result | None:
    r = store.results.get((path, corpus))
    return r if r is not None and r.wall else None


def targets(store: Store) -> list[tuple[str, bool | None, str]]:
    """(target, met / not met / None = not measured in this run, the numbers)."""
    out: list[tuple[str, bool | None, str]] = []
    sse12, vllm12 = _get(store, "hs_sse", "long_12k"), _get(store, BASELINE_4, "long_12k")
    if sse12 and vllm12:
        ratio = sse12.tokens_per_s / vllm12.tokens_per_s
        out.append(("per-token path >= 100x vLLM 0.33 at 12k", ratio >= 100, f"{ratio:.0f}x"))
    else:
        why = "vLLM baseline absent" if sse12 else "long_12k not run"
        out.append(("per-token path >= 100x vLLM 0.33 at 12k", None, why))
    plugin12 = _get(store, "vllm_plugin", "long_12k")
    if plugin12 and vllm12:
        ratio = plugin12.tokens_per_s / vllm12.tokens_per_s
        out.append(
            (
                "vLLM with the plugin: CPU per token vs without (12k)",
                None,
                f"{plugin12.us_per_token:.2f} vs {vllm12.us_per_token:.2f} us/token ({ratio:.1f}x)",
            )
        )
    if sse12:
        rate = sse12.tokens_per_s
        out.append(("per-token path >= 3 M tokens/s (12k)", rate >= 3e6, f"{rate / 1e6:.2f} M/s"))
    else:
        out.append(("per-token path >= 3 M tokens/s (12k)", None, "long_12k not run"))
    batch = [r for (p, _), r in store.results.items() if p == "hs_batch" and r.wall]
    b12 = _get(store, "hs_batch", "long_12k")
    if b12:
        worst = min(batch, key=lambda r: r.tokens_per_s)
        out.append(
            (
                "batch path >= 20 M tokens/s",
                b12.tokens_per_s >= 20e6,
                f"{b12.tokens_per_s / 1e6:.1f} M/s at 12k (lowest: "
                f"{worst.tokens_per_s / 1e6:.1f} M/s, {worst.corpus})",
            )
        )
    else:
        failed = [r.note for (p, _), r in store.results.items() if p == "hs_batch" and r.note]
        why = failed[0][:80] if failed else "long_12k not run"
        out.append(("batch path >= 20 M tokens/s", None, why))
    for path in ("hs_sse", "hs_batch"):
        r1, r47 = _get(store, path, "long_1k"), _get(store, path, "long_47k")
        label = f"{PATHS[path].split(' ')[0]} cost/token at 47k <= 1.2x cost at 1k"
        if r1 and r47:
            ratio = r47.us_per_token / r1.us_per_token
            ns47, ns1 = r47.us_per_token * 1e3, r1.us_per_token * 1e3
            out.append((label, ratio <= 1.2, f"{ratio:.2f}x ({ns47:.0f} vs {ns1:.0f} ns/token)"))
        else:
            out.append((label, None, "long_1k or long_47k not run"))
    mem = store.memory
    if mem.get("cases"):
        cases = mem["cases"]
        long = [c for c in cases.values() if c.get("output_bytes")]
        if long:
            worst = max(long, key=lambda c: c["rss_per_output_byte"])
            out.append(
                (
                    "<= 2 bytes retained per output byte",
                    worst["rss_per_output_byte"] <= 2.0,
                    f"{worst['rss_per_output_byte']:.2f} B/B ({worst['case']}, RSS)",
                )
            )
        idle = cases.get("idle_started") or cases.get("idle")
        if idle:
            out.append(
                (
                    "< 8 KiB per idle stream",
                    idle["rss_per_stream"] < 8 * KIB,
                    f"{idle['rss_per_stream'] / KIB:.2f} KiB (RSS, {idle['case']})",
                )
            )
    else:
        out.append(("memory targets", None, mem.get("skipped", "memory bench not run")))
    if store.route:
        out += route_targets(store)
    return out


# --------------------------------------------------------------------------- the whole route

ROUTE_TARGETS = {True: 1.2, False: 1.1}  # plugin / bare, streamed and not (issue 14)
ROUTE_ENDPOINTS = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


def route_cpu(store: Store) -> dict[tuple[str, bool, str, str, int], float]:
    """(endpoint, stream, who, corpus, step) -> best round's CPU µs per output token."""
    out: dict[tuple[str, bool, str, str, int], float] = {}
    for c in store.route.get("cases", []):
        if c["cpu"] and not c["problem"]:
            who = c["key"].split("/")[2]
            key = (c["endpoint"], c["stream"], who, c["corpus"], c["step"])
            out[key] = min(c["cpu"]) / c["tokens"] * 1e6
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:5.2f}x" if a is not None and b else "    - "


def _us(x: float | None) -> str:
    return f"{x:7.1f}" if x is not None else "      -"


def route_table(store: Store) -> list[str]:
    cases = store.route.get("cases")
    if not cases:
        return []
    cpu = route_cpu(store)
    rounds = max(len(c["cpu"]) for c in cases)
    lines = [
        f"Whole route: one request through vLLM {store.route['vllm']}'s FastAPI app "
        f"(scripted engine), process CPU us per output token, best of {rounds} round(s);",
        "step = tokens per engine output (0: not streamed, one output); "
        "bare = a minimal FastAPI route, one small SSE event per engine output.",
        "",
        f"{'corpus':9s} {'tokens':>6s} {'step':>4s} {'bare':>7s} | "
        + " | ".join(
            f"{e + ' vLLM':>14s} {'plugin':>7s} {'plg/off':>7s} {'plg/bare':>8s}"
            for e in ROUTE_ENDPOINTS
        ),
    ]
    lines.append("-" * len(lines[-1]))
    rows = {(c["corpus"], c["step"], c["tokens"]) for c in cases}
    keys = sorted(rows, key=lambda k: (k[2], k[1] == 0, k[1]))
    for corpus, step, tokens in keys:
        stream = step > 0
        bare = cpu.get(("bare", stream, "bare", corpus, step))
        parts = []
        for e in ROUTE_ENDPOINTS:
            off = cpu.get((e, stream, "vllm", corpus, step))
            on = cpu.get((e, stream, "plugin", corpus, step))
            parts.append(f"{_us(off):>14s} {_us(on)} {_ratio(on, off):>7s} {_ratio(on, bare):>8s}")
        lines.append(f"{corpus:9s} {tokens:6d} {step:4d} {_us(bare)} | " + " | ".join(parts))
    problems = [f"{c['key']}: {c['problem']}" for c in cases if c["problem"]]
    lines += [f"  FAILED {p}" for p in problems]
    return lines


def route_targets(store: Store) -> list[tuple[str, bool | None, str]]:
    """Issue 14's targets on the whole route, at one token per engine output."""
    if not store.route.get("cases"):
        why = "whole-route bench not run"
        return [("whole route: plugin <= 1.2x bare (stream), <= 1.1x (not)", None, why)]
    cpu = route_cpu(store)
    out: list[tuple[str, bool | None, str]] = []
    corpora = sorted({c["corpus"] for c in store.route["cases"]}, key=lambda n: len(n))
    for corpus in corpora:
        for e, path in ROUTE_ENDPOINTS.items():
            for stream, step in ((True, 1), (False, 0)):
                limit = ROUTE_TARGETS[stream]
                label = f"route {path} {'stream' if stream else 'non-stream'} {corpus}: "
                label += f"plugin <= {limit}x bare"
                on = cpu.get((e, stream, "plugin", corpus, step))
                bare = cpu.get(("bare", stream, "bare", corpus, step))
                if on is None or bare is None:
                    out.append((label, None, "not measured"))
                    continue
                off = cpu.get((e, stream, "vllm", corpus, step))
                value = f"{on / bare:.2f}x ({on:.1f} vs {bare:.1f} us/token"
                value += f"; vLLM alone {off:.1f})" if off is not None else ")"
                out.append((label, on / bare <= limit, value))
    steps = sorted({c["step"] for c in store.route["cases"] if c["step"] > 1})
    for corpus in corpora if steps else ():
        for e, path in ROUTE_ENDPOINTS.items():
            one = cpu.get((e, True, "plugin", corpus, 1))
            many = [(s, cpu.get((e, True, "plugin", corpus, s))) for s in steps]
            label = f"route {path} stream {corpus}: plugin per token at {steps} steps <= at 1"
            if one is None or not many or any(v is None for _, v in many):
                out.append((label, None, "not measured"))
                continue
            worst = max(v for _, v in many if v is not None)
            shown = ", ".join(f"{s}: {v:.1f}" for s, v in many if v is not None)
            out.append((label, worst <= one, f"1: {one:.1f}, {shown} us/token"))
    return out


def memory_lines(store: Store) -> list[str]:
    cases = store.memory.get("cases")
    if not cases:
        return []
    lines = [
        f"{'memory case':22s} {'streams':>7s} {'RSS/stream':>12s} {'tracemalloc/stream':>19s} "
        f"{'output B':>9s} {'RSS per output B':>17s}"
    ]
    for c in cases.values():
        per_out = f"{c['rss_per_output_byte']:17.2f}" if c.get("output_bytes") else f"{'-':>17s}"
        out_b = c.get("output_bytes") or 0
        lines.append(
            f"{c['case']:22s} {c['streams']:7d} {c['rss_per_stream'] / KIB:9.2f} KiB "
            f"{c['tracemalloc_per_stream'] / KIB:15.2f} KiB {out_b:9d} {per_out}"
        )
    return lines


def write_json(store: Store, path: Path, target_rows: list[tuple[str, bool | None, str]]) -> None:
    data: dict[str, Any] = {
        "mode": store.mode.name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "corpora": {
            name: {"kind": c.kind, "output_tokens": c.num_tokens}
            for name, c in store.corpora.items()
        },
        "results": [r.to_json() for r in store.results.values() if r.wall],
        "failed_or_skipped": [
            {"path": r.path, "corpus": r.corpus, "note": r.note}
            for r in store.results.values()
            if not r.wall
        ],
        "memory": store.memory,
        "route": store.route,
        "targets": [{"target": t, "met": m, "value": v} for t, m, v in target_rows],
        "notes": store.notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def plot(store: Store, path: Path) -> str | None:
    """tokens/s/core against output length, one line per path; None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    lengths = sorted(
        (c for c in store.corpora.values() if c.kind == "length"), key=lambda c: c.num_tokens
    )
    fig, ax = plt.subplots(figsize=(10.5, 5), dpi=110)
    styles: dict[str, tuple[str, str]] = {
        "hs_sse": ("tab:blue", "o-"),
        "hs_events": ("tab:cyan", "s--"),
        "hs_batch": ("tab:green", "D-"),
        "oh_pydantic": ("tab:orange", "^-"),
        "vllm": ("tab:red", "v-"),
        "vllm_plugin": ("tab:purple", "P-"),
    }
    drawn = 0
    for key, label in PATHS.items():
        pts = [(c.num_tokens, _get(store, key, c.name)) for c in lengths]
        xs = [n for n, r in pts if r]
        ys = [r.tokens_per_s for _, r in pts if r]
        if not xs:
            continue
        color, style = styles[key]
        ax.plot(xs, ys, style, color=color, label=label, markersize=4)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return "no length corpora measured: no plot"
    ax.axhline(3e6, ls=":", color="tab:blue", alpha=0.6, label="target (1): 3 M tokens/s")
    ax.axhline(20e6, ls=":", color="tab:green", alpha=0.6, label="target (2): 20 M tokens/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("output tokens per response (long-reasoning corpus)")
    ax.set_ylabel("tokens / s / core (best round)")
    ax.set_title(f"harmony-stream: Harmony tokens -> Responses SSE ({store.mode.name} run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None


def complete(store: Store) -> bool:
    """Every in-process path measured on every corpus, and the memory cases."""
    from _paths import PATH_CLASSES

    for corpus in store.corpora:
        for path in PATH_CLASSES:
            if _get(store, path, corpus) is None:
                return False
    return len(store.memory.get("cases", {})) >= 3


def report(store: Store, write: Callable[[str], None]) -> None:
    write("")
    write(f"=== harmony-stream bench ({store.mode.name} mode) ===")
    write("tokens/s/core: best round; per core = divided by CPU-time/wall-time when > 1.")
    write("(1b) is (1) with ResponseEvent objects; (2) counts 256 streams' tokens per round.")
    write("")
    for line in table(store):
        write(line)
    for line in memory_lines(store):
        write(line)
    route = route_table(store)
    if route:
        write("")
    for line in route:
        write(line)
    rows = targets(store)
    write("")
    write("Targets (issues 5 and 14; reported, not asserted):")
    for t, met, value in rows:
        status = {True: "MET    ", False: "NOT MET", None: "n/a    "}[met]
        write(f"  [{status}] {t}: {value}")
    if store.notes:
        write("")
        write("Notes:")
        for n in store.notes:
            write(f"  - {n}")
    out = store.mode.results_dir
    if not store.mode.short and not complete(store):
        # A partial full-mode run (-k, -x, a failure) must not replace the committed results.
        out = out.parent.parent / ".cache" / "bench_partial"
        write("partial run: the committed benches/results/ are left as they are")
    write_json(store, out / "results.json", rows)
    problem = plot(store, out / "throughput.png")
    write("")
    write(f"wrote {out / 'results.json'}")
    write(problem or f"wrote {out / 'throughput.png'}")
