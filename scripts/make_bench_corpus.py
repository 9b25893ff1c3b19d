"""Renders the benchmark corpus: gpt-oss completions of set lengths.

Transcripts: docs/architecture.md, Transcripts.

Every model turn is a list of assistant messages rendered by openai-harmony
(`HarmonyEncoding.render`, one message at a time), the first two tokens
(`<|start|>assistant`, already in the prompt) dropped and a turn's closing
`final` message ended with `<|return|>`, as in scripts/make_samples.py. The
text is pseudo-English from a seeded generator (with markdown, code, numbers
and multi-byte characters), so the output is deterministic: running the script
again rewrites the same bytes.

Corpora (``--short`` keeps the ones the CI bench needs):

* ``chat_short``  about 300 output tokens: short reasoning, then an answer.
* ``tool_heavy``  function call, MCP call, browser search/open and python,
                  each followed by its tool output, then the answer.
* ``long_<N>k``   an MCP call and its output, then long reasoning and a long
                  answer in the next turn (a server-run call ends a turn: the
                  engine stops at ``<|call|>``): the "long reasoning" shape, at
                  N thousand output tokens
                  (``long_12k`` and ``long_47k`` are the named ones; the others
                  are the points of the tokens/s-against-length plot).

Each file is a transcript (docs/architecture.md, Transcripts) with two extra keys the benches use:
``expected`` (per Harmony message: channel, recipient and the rendered text,
to check the final response against) and ``num_tokens``. ``index.json`` lists
the corpora.

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken python scripts/make_bench_corpus.py \
        [--out .cache/bench_corpus] [--short] [--lengths 1000,12000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from make_samples import analysis, final, preamble, tool_call
from openai_harmony import (
    HarmonyEncoding,
    HarmonyEncodingName,
    Message,
    load_harmony_encoding,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / ".cache" / "bench_corpus"

START, ASSISTANT, END, RETURN = 200006, 173781, 200007, 200002

FULL_LENGTHS = (1_000, 2_000, 4_000, 8_000, 12_000, 16_000, 24_000, 32_000, 47_000)
SHORT_LENGTHS = (1_000, 12_000, 47_000)

JsonObj = dict[str, Any]


# --------------------------------------------------------------------------- text

_WORD_TEXT = (
    "the model stream token parser event server request response item reasoning answer "
    "because however therefore first second then next finally value result function call "
    "tool output input length cost time memory buffer state channel message header content "
    "check compare measure again simple careful quick slow small large every each some many "
    "user question weather city forecast rain river bridge mountain valley history science "
    "light sound water energy market price number table figure chapter section example case "
    "should would could might must will can does did is are was were has have had been being "
    "under over between across within without after before during while until since though "
    "we they it this that these those which what where when why how not only also even just"
)
WORDS = _WORD_TEXT.split()
UNICODE_BITS = (
    "café",
    "naïve",
    "über",
    "—",
    "“quoted”",
    "…",
    "°C",
    "±2%",
    "→",
    "東京",
    "数据",
    "🚀",
    "✅",
    "👩‍💻",
    "🇯🇵",
    "ℏω",
    "résumé",
    "Zoë",
)


class TextGen:
    """An endless, seeded supply of sentences and paragraphs."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def sentence(self) -> str:
        rng = self.rng
        n = rng.randint(6, 22)
        words: list[str] = []
        for i in range(n):
            r = rng.random()
            if r < 0.05:
                words.append(rng.choice(UNICODE_BITS))
            elif r < 0.09:
                words.append(str(rng.randint(0, 99_999)))
            elif r < 0.11:
                words.append(f"`{rng.choice(WORDS)}_{rng.choice(WORDS)}()`")
            else:
                words.append(rng.choice(WORDS))
            if i < n - 1 and rng.random() < 0.08:
                words[-1] += ","
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice(".....?!:")

    def paragraphs(self, markdown: bool) -> Iterator[str]:
        """Paragraph after paragraph; with `markdown`, some are lists or code."""
        rng = self.rng
        while True:
            r = rng.random()
            if markdown and r < 0.12:
                items = [f"- **{rng.choice(WORDS)}**: {self.sentence()}" for _ in range(3)]
                yield "\n".join(items)
            elif markdown and r < 0.18:
                name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"
                body = f"    return {rng.randint(1, 999)} * x + {rng.randint(1, 99)}"
                yield f"```python\ndef {name}(x):\n{body}\n```"
            else:
                yield " ".join(self.sentence() for _ in range(rng.randint(2, 6)))


def paragraphs_of(gen: TextGen, enc: HarmonyEncoding, tokens: int, *, markdown: bool) -> list[str]:
    """Paragraphs of `gen` until they have at least about `tokens` tokens."""
    parts: list[str] = []
    count = 0
    paras = gen.paragraphs(markdown)
    while count < tokens:
        p = next(paras)
        parts.append(p)
        count += len(enc.encode(p + "\n\n", allowed_special=set()))
    return parts


def text_of(gen: TextGen, enc: HarmonyEncoding, tokens: int, *, markdown: bool) -> str:
    """Paragraphs of `gen` until the text has at least about `tokens` tokens."""
    return "\n\n".join(paragraphs_of(gen, enc, tokens, markdown=markdown))


# --------------------------------------------------------------------------- messages


def json_call(recipient: str, arguments: Any) -> Message:
    return tool_call(recipient, json.dumps(arguments), content_type="<|constrain|>json")


def browser_call(action: str, arguments: Any) -> Message:
    return tool_call(
        f"browser.{action}", json.dumps(arguments), channel="analysis", content_type="code"
    )


# --------------------------------------------------------------------------- transcripts


@dataclass(frozen=True)
class ModelTurn:
    messages: list[Message]


@dataclass(frozen=True)
class ToolResult:
    output: str | None
    error: str | None = None


@dataclass(frozen=True)
class Corpus:
    description: str
    kind: str  # "named" or "length"
    turns: list[ModelTurn | ToolResult]
    tools: list[JsonObj] = field(default_factory=list)


def render_turn(enc: HarmonyEncoding, turn: ModelTurn) -> list[int]:
    tokens: list[int] = []
    for msg in turn.messages:
        tokens.extend(enc.render(msg))
    if tokens[:2] != [START, ASSISTANT]:
        raise ValueError(f"a model turn must start with <|start|>assistant, got {tokens[:2]}")
    tokens = tokens[2:]
    last = turn.messages[-1]
    if last.channel == "final" and last.recipient is None and tokens[-1] == END:
        tokens[-1] = RETURN
    return tokens


def count_tokens(enc: HarmonyEncoding, turns: list[ModelTurn | ToolResult]) -> int:
    return sum(len(render_turn(enc, t)) for t in turns if isinstance(t, ModelTurn))


def expected_of(msg: Message) -> JsonObj:
    text = "".join(getattr(c, "text", "") for c in msg.content)
    return {"channel": msg.channel, "recipient": msg.recipient, "text": text}


def render_corpus(enc: HarmonyEncoding, corpus: Corpus) -> JsonObj:
    turns: list[JsonObj] = []
    expected: list[JsonObj] = []
    n = 0
    for turn in corpus.turns:
        if isinstance(turn, ModelTurn):
            tokens = render_turn(enc, turn)
            n += len(tokens)
            turns.append({"tokens": tokens, "finish_reason": "stop"})
            expected.extend(expected_of(m) for m in turn.messages)
        else:
            turns.append({"tool_output": {"output": turn.output, "error": turn.error}})
    return {
        "description": corpus.description,
        "kind": corpus.kind,
        "num_tokens": n,
        "tools": corpus.tools,
        "max_output_tokens": None,
        "turns": turns,
        "expected": expected,
    }


# --------------------------------------------------------------------------- tools

GET_WEATHER: JsonObj = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather and a short forecast for a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
}
GITHUB_MCP: JsonObj = {
    "type": "mcp",
    "server_label": "github",
    "server_url": "http://127.0.0.1:8765/mcp",
    "require_approval": "never",
}
WEB_SEARCH: JsonObj = {"type": "web_search_preview"}
CODE_INTERPRETER: JsonObj = {"type": "code_interpreter", "container": {"type": "auto"}}


# --------------------------------------------------------------------------- corpora


def chat_short(enc: HarmonyEncoding) -> Corpus:
    gen = TextGen(300)
    return Corpus(
        "Short chat: brief reasoning, then a markdown answer (~300 output tokens).",
        "named",
        [
            ModelTurn(
                [
                    analysis(text_of(gen, enc, 50, markdown=False)),
                    final(text_of(gen, enc, 170, markdown=True)),
                ]
            )
        ],
    )


def tool_heavy(enc: HarmonyEncoding) -> Corpus:
    gen = TextGen(7)

    def think(n: int = 60) -> Message:
        return analysis(text_of(gen, enc, n, markdown=False))

    issues = [
        {"number": 100 + i, "title": gen.sentence(), "state": "open", "comments": i}
        for i in range(6)
    ]
    search = "\n".join(
        f"# 【{i}†{gen.sentence()}†www.example{i}.org】\nL0: {gen.sentence()}" for i in range(5)
    )
    page = "\n".join(f"L{i}: {gen.sentence()}" for i in range(12))
    code = (
        "import statistics\n"
        "temps = [17.5, 18.25, 16.0, 19.75, 21.0, 20.5, 18.0]\n"
        "print(round(statistics.mean(temps), 2), round(statistics.stdev(temps), 2))"
    )
    return Corpus(
        "Tool-heavy: function, MCP, browser search/open and python calls with outputs.",
        "named",
        [
            ModelTurn(
                [
                    think(),
                    preamble("Let me look up the weather and the open issues first."),
                    json_call("functions.get_weather", {"location": "Tokyo, JP", "unit": "C"}),
                ]
            ),
            ToolResult('{"temperature": 18, "conditions": "light rain", "wind_kmh": 12}'),
            ModelTurn(
                [
                    think(),
                    json_call(
                        "github.search_issues",
                        {"repo": "openai/harmony", "query": "streaming is:open", "per_page": 6},
                    ),
                ]
            ),
            ToolResult(json.dumps(issues)),
            ModelTurn([think(), browser_call("search", {"query": "tokyo rain", "topn": 5})]),
            ToolResult(search),
            ModelTurn([think(40), browser_call("open", {"id": 2, "cursor": 1})]),
            ToolResult(page),
            ModelTurn(
                [think(40), tool_call("python", code, channel="analysis", content_type="code")]
            ),
            ToolResult("18.71 1.76\n"),
            ModelTurn([think(80), final(text_of(gen, enc, 260, markdown=True))]),
        ],
        [GET_WEATHER, GITHUB_MCP, WEB_SEARCH, CODE_INTERPRETER],
    )


def long_reasoning(enc: HarmonyEncoding, n_tokens: int) -> Corpus:
    """An MCP call, its output, then long analysis and a long final: ~`n_tokens`.

    The turn after the tool output holds the bulk, as a long answer does: about
    55 % analysis, the rest the final answer (its size is fitted to `n_tokens`).
    """
    gen = TextGen(n_tokens)
    first = text_of(gen, enc, 40, markdown=False)
    call = json_call(
        "github.search_issues",
        {"repo": "vllm-project/vllm", "query": "harmony streaming latency", "per_page": 20},
    )
    tool_out = json.dumps([{"number": 9000 + i, "title": gen.sentence()} for i in range(20)])
    reasoning = text_of(gen, enc, int(n_tokens * 0.55), markdown=False)
    paragraphs = paragraphs_of(gen, enc, n_tokens - int(n_tokens * 0.55) + 100, markdown=True)

    def build(k: int) -> list[ModelTurn | ToolResult]:
        return [
            ModelTurn([analysis(first), call]),
            ToolResult(tool_out),
            ModelTurn([analysis(reasoning), final("\n\n".join(paragraphs[:k]))]),
        ]

    # The fewest final paragraphs that reach n_tokens (binary search; renders are fast).
    lo, hi = 1, len(paragraphs)
    if count_tokens(enc, build(hi)) < n_tokens:
        raise ValueError(f"{n_tokens} tokens: not enough final text generated")
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(enc, build(mid)) >= n_tokens:
            hi = mid
        else:
            lo = mid + 1
    return Corpus(
        f"Long reasoning (~{n_tokens} output tokens): MCP call, output, analysis, final.",
        "length",
        build(lo),
        [GITHUB_MCP],
    )


def length_name(n: int) -> str:
    return f"long_{n // 1000}k"


def corpora(enc: HarmonyEncoding, lengths: tuple[int, ...]) -> dict[str, Corpus]:
    out = {"chat_short": chat_short(enc), "tool_heavy": tool_heavy(enc)}
    for n in lengths:
        out[length_name(n)] = long_reasoning(enc, n)
    return out


# --------------------------------------------------------------------------- output


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--short", action="store_true", help=f"lengths {SHORT_LENGTHS} only")
    ap.add_argument("--lengths", help="comma-separated output lengths of the long corpora")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.lengths:
        lengths = tuple(int(x) for x in args.lengths.split(","))
    else:
        lengths = SHORT_LENGTHS if args.short else FULL_LENGTHS

    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    index: list[JsonObj] = []
    changed = 0
    for name, corpus in corpora(enc, lengths).items():
        data = render_corpus(enc, corpus)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
        if write_if_changed(args.out / f"{name}.json", text):
            changed += 1
        index.append({"name": name, "kind": data["kind"], "num_tokens": data["num_tokens"]})
        if not args.quiet:
            print(f"{name:12s} {data['num_tokens']:7d} tokens  {corpus.description}")
    write_if_changed(args.out / "index.json", json.dumps(index, indent=1) + "\n")
    if not args.quiet:
        print(f"{changed} file(s) changed in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
