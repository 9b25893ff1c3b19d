"""Recorded-style model transcripts for the vLLM suite, built from Harmony text.

Each turn is the model's output after the prompt's `<|start|>assistant`, written
as Harmony text and encoded with the vLLM venv's own `openai_harmony` encoding
(`encode(text, allowed_special="all")`). Nothing here states an expected
output: the tests compare vLLM against itself (plugin off / on) or check
invariants derived from these tokens.

Built-in tools (browser, python, container) take one model turn per call:
vLLM's tool loop runs the tool (the real MCP servers of mcp_servers.py) and
renders the next prompt; the next turn continues from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault(
    "TIKTOKEN_ENCODINGS_BASE", str(Path(__file__).resolve().parents[1] / ".cache" / "tiktoken")
)

from openai_harmony import HarmonyEncodingName, load_harmony_encoding

ENCODING = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
MESSAGE = ENCODING.encode("<|message|>", allowed_special="all")[0]


@dataclass(frozen=True)
class Turn:
    text: str  # Harmony text of the model's output for this turn
    finish_reason: str = "stop"  # "length": the output was cut by max tokens

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(ENCODING.encode(self.text, allowed_special="all"))


@dataclass(frozen=True)
class Entry:
    name: str
    turns: tuple[Turn, ...]
    responses_tools: tuple[dict[str, Any], ...] = ()
    chat_tools: tuple[dict[str, Any], ...] | None = None
    quirk: bool = False  # a model quirk (docs/architecture.md, Lenient parsing)
    kinds: frozenset[str] = field(default_factory=frozenset)  # Responses item kinds
    prompt: str = "What is the weather in Paris today?"

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(t for turn in self.turns for t in turn.tokens)

    def __str__(self) -> str:
        return self.name


# --- tools, in both request forms ------------------------------------------------

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["location"],
}
WEATHER_RESPONSES = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": WEATHER_PARAMS,
}
WEATHER_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": WEATHER_PARAMS,
    },
}
WEB_SEARCH = {"type": "web_search_preview"}
CODE_INTERPRETER = {"type": "code_interpreter", "container": {"type": "auto"}}
# vLLM enables the container namespace from an MCP tool whose label is listed in
# VLLM_GPT_OSS_SYSTEM_TOOL_MCP_LABELS (the harness sets "container").
CONTAINER = {"type": "mcp", "server_label": "container", "server_url": "http://unused.invalid"}

FUNCTIONS = ((WEATHER_RESPONSES,), (WEATHER_CHAT,))


def _msg(channel: str, content: str, end: str = "<|end|>", header: str = "") -> str:
    return f"<|channel|>{channel}{header}<|message|>{content}{end}"


def _next(text: str) -> str:
    """A later message of the same turn: starts with `<|start|>assistant`."""
    return "<|start|>assistant" + text


def _weather_call(args: str = '{"location": "Paris", "unit": "c"}') -> str:
    return _msg("commentary", args, "<|call|>", " to=functions.get_weather <|constrain|>json")


REASONING = "The user wants the weather in Paris. I should answer briefly."
ANSWER = "It is 18 °C in Paris with light rain this afternoon."

CORPUS: tuple[Entry, ...] = (
    Entry(
        "reasoning_final",
        (Turn(_msg("analysis", REASONING) + _next(_msg("final", ANSWER, "<|return|>"))),),
        kinds=frozenset({"reasoning", "message"}),
    ),
    Entry(
        "final_only",
        (Turn(_msg("final", "Paris: 18 °C, light rain.", "<|return|>")),),
        kinds=frozenset({"message"}),
    ),
    Entry(
        "preamble_function_call",
        (
            Turn(
                _msg("analysis", "Need the weather tool.")
                + _next(_msg("commentary", "Let me look that up for you."))
                + _next(_weather_call())
            ),
        ),
        *FUNCTIONS,
        kinds=frozenset({"reasoning", "message", "function_call"}),
    ),
    Entry(
        "function_call_recipient_first",
        (
            Turn(
                _msg("analysis", "Call get_weather.")
                + "<|start|>assistant to=functions.get_weather<|channel|>commentary json"
                + '<|message|>{"location": "Tokyo"}<|call|>'
            ),
        ),
        *FUNCTIONS,
        kinds=frozenset({"reasoning", "function_call"}),
    ),
    Entry(
        "function_call_long_args",
        (
            Turn(
                _weather_call(
                    '{"location": "Saint-Rémy-de-Provence, Bouches-du-Rhône, France", '
                    '"unit": "f", "note": "' + "x" * 120 + '"}'
                )
            ),
        ),
        *FUNCTIONS,
        kinds=frozenset({"function_call"}),
    ),
    Entry(
        "empty_reasoning",
        (Turn(_msg("analysis", "") + _next(_msg("final", ANSWER, "<|return|>"))),),
        kinds=frozenset({"reasoning", "message"}),
    ),
    Entry(
        "empty_final",
        (Turn(_msg("analysis", REASONING) + _next(_msg("final", "", "<|return|>"))),),
        kinds=frozenset({"reasoning", "message"}),
    ),
    Entry(
        "empty_function_args",
        (
            Turn(
                _msg("analysis", "Call it without arguments.")
                + _next(_msg("commentary", "", "<|call|>", " to=functions.get_weather"))
            ),
        ),
        *FUNCTIONS,
        kinds=frozenset({"reasoning", "function_call"}),
    ),
    Entry(
        "browser_search_open",
        (
            Turn(
                _msg("analysis", "Search the web for Paris weather.")
                + _next(
                    _msg(
                        "analysis",
                        '{"query": "paris weather", "topn": 3}',
                        "<|call|>",
                        " to=browser.search <|constrain|>json",
                    )
                )
            ),
            Turn(
                _msg("analysis", "Open the first result.")
                + _next(_msg("analysis", '{"id": 0}', "<|call|>", " to=browser.open"))
            ),
            Turn(
                _msg("analysis", "The page says 18 C with rain.")
                + _next(_msg("final", ANSWER, "<|return|>"))
            ),
        ),
        (WEB_SEARCH,),
        kinds=frozenset({"reasoning", "web_search_call", "message"}),
    ),
    Entry(
        "browser_find",
        (
            Turn(_msg("analysis", '{"pattern": "sunny"}', "<|call|>", " to=browser.find")),
            Turn(_msg("final", "Tomorrow will be sunny.", "<|return|>")),
        ),
        (WEB_SEARCH,),
        kinds=frozenset({"web_search_call", "message"}),
    ),
    Entry(
        "python_call",
        (
            Turn(
                _msg("analysis", "Compute it with python.")
                + _next(_msg("analysis", "print(2**10 + 7 * 3)", "<|call|>", " to=python code"))
            ),
            Turn(
                _msg("analysis", "The tool printed the result.")
                + _next(_msg("final", "2**10 + 7*3 = 1045.", "<|return|>"))
            ),
        ),
        (CODE_INTERPRETER,),
        kinds=frozenset({"reasoning", "code_interpreter_call", "message"}),
        prompt="What is 2**10 + 7*3?",
    ),
    Entry(
        "container_exec",
        (
            Turn(
                _msg("analysis", "Hash the word with the container.")
                + _next(
                    _msg(
                        "analysis",
                        '{"cmd": ["sha256sum", "harmony"]}',
                        "<|call|>",
                        " to=container.exec <|constrain|>json",
                    )
                )
            ),
            Turn(
                _msg("analysis", "Got the digest.")
                + _next(_msg("final", "The SHA-256 of harmony is shown above.", "<|return|>"))
            ),
        ),
        (CONTAINER,),
        kinds=frozenset({"reasoning", "mcp_call", "message"}),
        prompt="What is the sha256 of the word harmony?",
    ),
    Entry(
        "container_exec_error",
        (
            Turn(
                _msg(
                    "analysis",
                    '{"cmd": ["fail", "disk full"]}',
                    "<|call|>",
                    " to=container.exec <|constrain|>json",
                )
            ),
            Turn(_msg("final", "The command failed: the disk is full.", "<|return|>")),
        ),
        (CONTAINER,),
        kinds=frozenset({"mcp_call", "message"}),
        prompt="Run the failing command.",
    ),
    Entry(
        "tool_loop_multi_turn",
        (
            Turn(
                _msg("analysis", "First count the lines with the container.")
                + _next(
                    _msg(
                        "commentary",
                        '{"cmd": ["seq", "3"]}',
                        "<|call|>",
                        " to=container.exec <|constrain|>json",
                    )
                )
            ),
            Turn(
                _msg("analysis", "Three lines. Now multiply with python.")
                + _next(_msg("analysis", "3 * 14", "<|call|>", " to=python code"))
            ),
            Turn(
                _msg("analysis", "42. Check the web too.")
                + _next(
                    _msg(
                        "analysis",
                        '{"query": "harmony format"}',
                        "<|call|>",
                        " to=browser.search <|constrain|>json",
                    )
                )
            ),
            Turn(
                _msg("analysis", "All done; answer.")
                + _next(_msg("commentary", "Here is what I found."))
                + _next(
                    _msg("final", "3 lines, 3 * 14 = 42, and Harmony has channels.", "<|return|>")
                )
            ),
        ),
        (CONTAINER, CODE_INTERPRETER, WEB_SEARCH),
        kinds=frozenset(
            {"reasoning", "mcp_call", "code_interpreter_call", "web_search_call", "message"}
        ),
        prompt="Count, multiply and search.",
    ),
    Entry(
        "truncated_final",
        (
            Turn(
                _msg("analysis", REASONING)
                + _next("<|channel|>final<|message|>It is 18 °C in Paris with light"),
                "length",
            ),
        ),
        kinds=frozenset({"reasoning", "message"}),
    ),
    Entry(
        "truncated_reasoning",
        (Turn("<|channel|>analysis<|message|>The user wants the weather in", "length"),),
        kinds=frozenset({"reasoning"}),
    ),
    Entry(
        "truncated_function_args",
        (
            Turn(
                _msg("analysis", "Call it.") + _next(_weather_call()).removesuffix('c"}<|call|>'),
                "length",
            ),
        ),
        *FUNCTIONS,
        kinds=frozenset({"reasoning", "function_call"}),
    ),
    Entry(
        "multibyte",
        (
            Turn(
                _msg("analysis", "Réponse en japonais 🗾 avec emoji 👩‍👩‍👧‍👦.")
                + _next(_msg("final", "東京は晴れ、23度です ☀️🌧️ — Zürich: 12°C. 👍🏽", "<|return|>"))
            ),
        ),
        kinds=frozenset({"reasoning", "message"}),
        prompt="東京の天気は?",
    ),
    # --- quirks (docs/architecture.md, Lenient parsing) ---------------------------
    Entry(
        "quirk_malformed_channel",
        (
            Turn(
                _msg("analysis", "Check the weather.")
                + _next(_msg("commentary?", "Looking it up now."))
                + _next(_msg("final", ANSWER, "<|return|>"))
            ),
        ),
        quirk=True,
    ),
    Entry(
        "quirk_double_start",
        (
            Turn(
                _msg("analysis", REASONING)
                + "<|start|>"
                + _next(_msg("final", ANSWER, "<|return|>"))
            ),
        ),
        quirk=True,
    ),
    Entry(
        "quirk_cut_in_header",
        (Turn(_msg("analysis", REASONING) + "<|start|>assistant<|channel|>fin", "length"),),
        quirk=True,
    ),
    Entry(
        "quirk_stray_end_return",
        (Turn(_msg("analysis", REASONING) + _next(_msg("final", ANSWER, "<|end|><|return|>"))),),
        quirk=True,
    ),
    Entry(
        "quirk_stray_end_call",
        (
            Turn(
                _msg("analysis", "Call it.")
                + _next(_weather_call().replace("<|call|>", "<|end|><|call|>"))
            ),
        ),
        *FUNCTIONS,
        quirk=True,
    ),
    Entry(
        "quirk_missing_start",
        (Turn(_msg("analysis", REASONING) + _msg("final", ANSWER, "<|return|>")),),
        quirk=True,
    ),
    Entry(
        "quirk_constrain_glued",
        (
            Turn(
                _msg(
                    "commentary",
                    '{"location": "Paris"}',
                    "<|call|>",
                    " to=functions.get_weather<|constrain|>json",
                )
            ),
        ),
        *FUNCTIONS,
        quirk=True,
    ),
    Entry(
        "quirk_final_constrain_json",
        (
            Turn(
                _msg("final", '{"city": "Paris", "temp_c": 18}', "<|return|>", " <|constrain|>json")
            ),
        ),
        quirk=True,
    ),
    Entry(
        "quirk_function_on_analysis",
        (Turn(_msg("analysis", '{"location": "Paris"}', "<|call|>", " to=functions.get_weather")),),
        *FUNCTIONS,
        quirk=True,
    ),
    Entry(
        "quirk_text_after_end",
        (
            Turn(
                _msg("analysis", REASONING)
                + "stray words"
                + _next(_msg("final", ANSWER, "<|return|>"))
            ),
        ),
        quirk=True,
    ),
)

# Pieces of Harmony for seeded random streams (special tokens, header words,
# recipients, content): every order of them is some model's bad day.
HARMONY_PIECES = (
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|call|>",
    "<|return|>",
    "assistant",
    "analysis",
    "final",
    "commentary",
    "commentary?",
    " to=functions.get_weather",
    " to=container.exec",
    " to=browser.search",
    " to=python",
    " json",
    " code",
    "text 🎉 中文",
    '{"cmd": ["seq", "2"]}',
    "\n",
)


def random_harmony_text(rng: Any, max_pieces: int = 30) -> str:
    """1 to `max_pieces` random HARMONY_PIECES, joined."""
    return "".join(rng.choice(HARMONY_PIECES) for _ in range(rng.randrange(1, max_pieces)))


CLEAN = tuple(e for e in CORPUS if not e.quirk)
QUIRKS = tuple(e for e in CORPUS if e.quirk)
BY_NAME = {e.name: e for e in CORPUS}


def message_contents(tokens: tuple[int, ...]) -> list[tuple[str, str]]:
    """(header, content) of every message in a token stream, by tokens alone:
    the content is what follows a `<|message|>` token up to the next special
    token or the end of the stream; the header is the text between the previous
    special `<|start|>`/`<|end|>`-like boundary and `<|message|>` (decoded with
    specials). Parser-independent, so it applies to quirk streams too."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        if tokens[i] != MESSAGE:
            i += 1
            continue
        h = i - 1
        while h >= 0 and ENCODING.decode([tokens[h]]) not in (
            "<|start|>",
            "<|end|>",
            "<|call|>",
            "<|return|>",
        ):
            h -= 1
        header = ENCODING.decode(list(tokens[h + 1 : i]))
        j = i + 1
        while j < len(tokens) and not ENCODING.is_special_token(tokens[j]):
            j += 1
        out.append((header, ENCODING.decode(list(tokens[i + 1 : j]))))
        i = j
    return out


BUILTIN_NAMESPACES = ("browser", "python", "container")


@dataclass(frozen=True)
class BuiltinCall:
    """A built-in tool call ending a turn, as vLLM 0.33's HarmonyContext issues it."""

    recipient: str
    server: str  # the MCP server (tool namespace)
    tool: str
    arguments: dict[str, Any]


def builtin_call(turn: Turn) -> BuiltinCall | None:
    """The built-in call that ends `turn` (last message ends with `<|call|>` and
    its recipient is browser.*, python or container.*), else None."""
    import json
    import re

    if not turn.text.endswith("<|call|>"):
        return None
    header, content = message_contents(turn.tokens)[-1]
    m = re.search(r"to=(\S+)", header.replace("<|", " <|"))
    if m is None:
        return None
    recipient = m[1]
    namespace = recipient.split(".")[0]
    if namespace not in BUILTIN_NAMESPACES:
        return None
    if namespace == "python":
        return BuiltinCall(recipient, "python", "python", {"code": content})
    tool = recipient.split(".", 1)[1].split(" ")[0]
    return BuiltinCall(recipient, namespace, tool, json.loads(content))
