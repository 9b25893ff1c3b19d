"""Renders realistic gpt-oss conversations into transcript files.

The format: docs/architecture.md, Transcripts.

Every model turn is a list of assistant messages rendered by openai-harmony
(`HarmonyEncoding.render`, one message at a time, concatenated). A completion
prompt already ends with `<|start|>assistant`, so the first two tokens of each
turn are dropped. The renderer closes every message with `<|end|>` (or
`<|call|>` when it has a recipient); a turn's last `final` message is closed
with `<|return|>` instead, as the model does.

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken python scripts/make_samples.py

Writes tests/data/transcripts/*.json, python/harmony_stream/data/sample_transcript.json
and the replay server's bundled corpus, python/harmony_stream/data/corpus/*.json (the
samples named in CORPUS, plus `weather_agent`). The output is deterministic: running it
again rewrites the same bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai_harmony import (
    HarmonyEncoding,
    HarmonyEncodingName,
    Message,
    Role,
    load_harmony_encoding,
)

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT_DIR = ROOT / "tests" / "data" / "transcripts"
SAMPLE_PATH = ROOT / "python" / "harmony_stream" / "data" / "sample_transcript.json"
CORPUS_DIR = ROOT / "python" / "harmony_stream" / "data" / "corpus"
# The samples `harmony-stream serve` ships (besides the corpus-only ones below).
CORPUS = ("chat_final", "function_call", "mcp_call", "mcp_failed", "browser_python", "unicode")
CORPUS_ONLY = ("weather_agent",)

START, ASSISTANT, END, RETURN, CALL = 200006, 173781, 200007, 200002, 200012

JsonObj = dict[str, Any]


# --------------------------------------------------------------------------- messages


def analysis(text: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel("analysis")


def final(text: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel("final")


def preamble(text: str) -> Message:
    """A user-visible commentary message without recipient."""
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel("commentary")


def tool_call(
    recipient: str, arguments: str, *, channel: str = "commentary", content_type: str | None = None
) -> Message:
    msg = (
        Message.from_role_and_content(Role.ASSISTANT, arguments)
        .with_channel(channel)
        .with_recipient(recipient)
    )
    return msg.with_content_type(content_type) if content_type else msg


def function_call(name: str, arguments: Any) -> Message:
    return tool_call(f"functions.{name}", json.dumps(arguments), content_type="<|constrain|>json")


# --------------------------------------------------------------------------- transcripts


@dataclass(frozen=True)
class ModelTurn:
    messages: list[Message]
    finish_reason: str = "stop"
    # Keep only this many tokens (a turn cut by max_output_tokens).
    cut_at: int | None = None


@dataclass(frozen=True)
class ToolResult:
    output: str | None
    error: str | None = None


@dataclass(frozen=True)
class Sample:
    description: str
    turns: list[ModelTurn | ToolResult]
    tools: list[JsonObj] = field(default_factory=list)
    max_output_tokens: int | None = 4096


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
    if turn.cut_at is not None:
        tokens = tokens[: turn.cut_at]
    return tokens


def render_sample(enc: HarmonyEncoding, sample: Sample) -> JsonObj:
    turns: list[JsonObj] = []
    for turn in sample.turns:
        if isinstance(turn, ModelTurn):
            tokens = render_turn(enc, turn)
            turns.append({"tokens": tokens, "finish_reason": turn.finish_reason})
        else:
            turns.append({"tool_output": {"output": turn.output, "error": turn.error}})
    out: JsonObj = {"description": sample.description, "tools": sample.tools}
    out["max_output_tokens"] = sample.max_output_tokens
    out["turns"] = turns
    return out


# --------------------------------------------------------------------------- JSON layout


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        v is None or isinstance(v, (int, float, str, bool)) for v in value
    )


def _dump(value: Any, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, dict) and value:
        items = [f"{pad}  {json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and not _is_flat_list(value):
        items = [f"{pad}  {_dump(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def dumps(value: Any) -> str:
    """JSON with objects indented and lists of scalars (tokens, deltas) on one line."""
    return _dump(value, 0) + "\n"


def write_json(path: Path, value: Any) -> bool:
    """Writes `value` to `path`; returns whether the file changed."""
    text = dumps(value)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


# --------------------------------------------------------------------------- tools

GET_WEATHER: JsonObj = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather and a short forecast for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country, e.g. Paris, FR"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
CREATE_EVENT: JsonObj = {
    "type": "function",
    "name": "create_calendar_event",
    "description": "Adds an event to the user's calendar.",
    "parameters": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "start": {"type": "string", "description": "ISO 8601 date-time"},
            "duration_minutes": {"type": "integer"},
        },
        "required": ["title", "start"],
    },
}
GITHUB_MCP: JsonObj = {
    "type": "mcp",
    "server_label": "github",
    "server_url": "http://127.0.0.1:8765/mcp",
    "require_approval": "never",
}
UNITS_MCP: JsonObj = {
    "type": "mcp",
    "server_label": "units",
    "server_url": "http://127.0.0.1:8766/mcp",
    "require_approval": "never",
}
WEB_SEARCH: JsonObj = {"type": "web_search_preview"}
CODE_INTERPRETER: JsonObj = {"type": "code_interpreter", "container": {"type": "auto"}}


# --------------------------------------------------------------------------- samples


def samples() -> dict[str, Sample]:
    chat_final = Sample(
        "A plain answer: reasoning, then the final answer in two paragraphs.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user asks why the sky is blue. I should explain Rayleigh "
                        "scattering briefly: shorter wavelengths scatter more strongly, "
                        "roughly with the inverse fourth power of the wavelength. Also "
                        "mention why sunsets are red, since that is the natural follow-up. "
                        "Keep it short and friendly."
                    ),
                    final(
                        "The sky looks blue because of **Rayleigh scattering**. Sunlight "
                        "contains every colour, but when it passes through the atmosphere the "
                        "tiny nitrogen and oxygen molecules scatter short wavelengths (blue and "
                        "violet) much more strongly than long ones (red and orange) — about "
                        "5.5 times more for blue than for red.\n\n"
                        "We see blue rather than violet because sunlight has less violet in it "
                        "and our eyes are more sensitive to blue. At sunrise and sunset the "
                        "light crosses much more air, so most of the blue is scattered away "
                        "before it reaches you, leaving the reds and oranges."
                    ),
                ]
            )
        ],
    )

    function_call_sample = Sample(
        "A function call ending in <|call|>, its output, then reasoning and the final answer.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user wants to know whether to bring an umbrella in Tokyo "
                        "tomorrow. I need the forecast; call get_weather for Tokyo in celsius."
                    ),
                    function_call("get_weather", {"location": "Tokyo, JP", "unit": "celsius"}),
                ]
            ),
            ToolResult(
                '{"location": "Tokyo, JP", "temperature": 18, "unit": "celsius", '
                '"conditions": "light rain", "forecast": [{"day": "tomorrow", '
                '"conditions": "showers", "precipitation_probability": 0.8, "high": 17, '
                '"low": 12}]}'
            ),
            ModelTurn(
                [
                    analysis(
                        "Tomorrow: showers with an 80% chance of precipitation, high 17 °C, "
                        "low 12 °C. So yes, recommend an umbrella and a light jacket."
                    ),
                    final(
                        "Yes — take an umbrella. Tokyo's forecast for tomorrow is showers with "
                        "an 80% chance of rain, a high of 17 °C and a low of 12 °C.\n\n"
                        "A light jacket would be a good idea too, especially in the evening."
                    ),
                ]
            ),
        ],
        tools=[GET_WEATHER],
    )

    mcp_call = Sample(
        "An MCP tool call (github.search_issues), its output, then the final answer.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user asks for open issues about streaming in the harmony repo. "
                        "The github MCP server has a search_issues tool; search for open "
                        "issues mentioning streaming."
                    ),
                    tool_call(
                        "github.search_issues",
                        json.dumps(
                            {
                                "repo": "openai/harmony",
                                "query": "streaming parser is:open",
                                "per_page": 5,
                            }
                        ),
                        content_type="<|constrain|>json",
                    ),
                ]
            ),
            ToolResult(
                '[{"number": 61, "title": "StreamableParser fails on <|constrain|> after '
                'final channel", "state": "open", "comments": 4}, {"number": 57, "title": '
                '"last_content_delta is None for split multi-byte characters", "state": '
                '"open", "comments": 2}]'
            ),
            ModelTurn(
                [
                    analysis("Two open issues came back. Summarize both with their numbers."),
                    final(
                        "I found two open issues about streaming in `openai/harmony`:\n\n"
                        "1. **#61** — StreamableParser fails on `<|constrain|>` after the final "
                        "channel (4 comments).\n"
                        "2. **#57** — `last_content_delta` is `None` for split multi-byte "
                        "characters (2 comments)."
                    ),
                ]
            ),
        ],
        tools=[GITHUB_MCP],
    )

    mcp_failed = Sample(
        "An MCP tool call whose tool fails (tool_output.error); the model apologizes.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user wants the latest release notes of the repository. Use the "
                        "github MCP server's get_latest_release tool."
                    ),
                    tool_call(
                        "github.get_latest_release",
                        json.dumps({"repo": "example-org/private-service"}),
                        content_type="<|constrain|>json",
                    ),
                ]
            ),
            ToolResult(
                None,
                "Error executing tool get_latest_release: 404 Not Found: repository "
                "example-org/private-service does not exist or is not accessible",
            ),
            ModelTurn(
                [
                    analysis(
                        "The tool failed with 404: the repository is missing or private. "
                        "Tell the user and suggest checking the name or access rights."
                    ),
                    final(
                        "I couldn't fetch the release notes: GitHub answered *404 Not Found* "
                        "for `example-org/private-service`. Either the repository name is "
                        "misspelled or it is private and the connector has no access to it.\n\n"
                        "Could you double-check the name, or grant access to the repository?"
                    ),
                ]
            ),
        ],
        tools=[GITHUB_MCP],
    )

    search_results = (
        "# 【0†Solar Orbiter returns first close-up of Sun's south pole†www.esa.int】\n"
        "L0: ESA's Solar Orbiter has taken the first images of the Sun's south pole, "
        "showing a magnetic field in disarray as the solar maximum peaks.\n"
        "# 【1†Parker Solar Probe completes record perihelion†www.nasa.gov】\n"
        "L0: NASA's Parker Solar Probe passed 6.1 million km from the solar surface."
    )
    page_text = (
        "【0†Solar Orbiter returns first close-up of Sun's south pole†www.esa.int】\n"
        "L0: Solar Orbiter tilted its orbit to 17 degrees out of the ecliptic, the first "
        "spacecraft to image the poles. L1: The images show the magnetic north and south "
        "poles mixed near the south pole, as expected at solar maximum."
    )
    browser_python = Sample(
        "Built-in tools: browser.search, browser.open and python, with outputs between turns.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user wants recent news about solar probes and the distance "
                        "ratio. Search first."
                    ),
                    tool_call(
                        "browser.search",
                        json.dumps({"query": "solar probe news", "topn": 5, "source": "news"}),
                        channel="analysis",
                        content_type="code",
                    ),
                ]
            ),
            ToolResult(search_results),
            ModelTurn(
                [
                    analysis("Open the ESA result for details."),
                    tool_call(
                        "browser.open",
                        json.dumps({"id": 0, "cursor": 1}),
                        channel="analysis",
                        content_type="code",
                    ),
                ]
            ),
            ToolResult(page_text),
            ModelTurn(
                [
                    analysis(
                        "Compute what fraction of the Earth-Sun distance 6.1 million km is, "
                        "with python to be exact."
                    ),
                    tool_call(
                        "python",
                        "au_km = 149_597_870.7\nperihelion_km = 6.1e6\n"
                        "print(round(perihelion_km / au_km * 100, 2))",
                        channel="analysis",
                        content_type="code",
                    ),
                ]
            ),
            ToolResult("4.08\n"),
            ModelTurn(
                [
                    analysis("4.08% of an astronomical unit. Write the answer with citations."),
                    final(
                        "Two recent highlights:\n\n"
                        "- **Solar Orbiter** (ESA) took the first images of the Sun's south "
                        "pole after tilting its orbit 17° out of the ecliptic; the magnetic "
                        "field there is in disarray, as expected at solar maximum "
                        "【0†L0-L1】.\n"
                        "- **Parker Solar Probe** (NASA) passed 6.1 million km from the solar "
                        "surface — only about 4.08% of the Earth-Sun distance."
                    ),
                ]
            ),
        ],
        tools=[WEB_SEARCH, CODE_INTERPRETER],
    )

    preamble_sample = Sample(
        "A user-visible preamble (commentary, no recipient), then a function call.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user wants a 30-minute meeting with the design team next Tuesday "
                        "at 10:00. Tell them what I'm doing, then create the event."
                    ),
                    preamble("Sure — I'll add that to your calendar now."),
                    function_call(
                        "create_calendar_event",
                        {
                            "title": "Design team sync",
                            "start": "2025-03-11T10:00:00",
                            "duration_minutes": 30,
                        },
                    ),
                ]
            ),
            ToolResult('{"status": "created", "event_id": "evt_81f2"}'),
            ModelTurn(
                [
                    final(
                        "Done: **Design team sync** is on your calendar for Tuesday, "
                        "11 March at 10:00, for 30 minutes."
                    )
                ]
            ),
        ],
        tools=[CREATE_EVENT],
    )

    unicode_sample = Sample(
        "Non-ASCII text: emoji, ZWJ sequences, flags, CJK, combining marks, RTL, math.",
        [
            ModelTurn(
                [
                    analysis(
                        "User wrote: 「東京で一番おいしいラーメン屋はどこ？」 "  # noqa: RUF001
                        "and added 🍜👨‍👩‍👧‍👦. "
                        "They want recommendations in Japanese with emoji. Mention "
                        "café-style places too (note: cafe\u0301 with a combining accent). "
                        "Keep 🇯🇵 flag. Ω ≈ 2π·r; naïve Zoë; עברית and العربية test."
                    ),
                    final(
                        "おすすめのラーメン屋を3つ紹介します 🍜✨\n\n"
                        "1. **一蘭 渋谷店** — とんこつ、一人席でゆっくり 🧑‍🍳\n"
                        "2. **中華そば 青葉** — 魚介と動物系のダブルスープ 🐟🐖\n"
                        "3. **AFURI 恵比寿** — 柚子塩ラーメン、さっぱり系 🍋\n\n"
                        "家族連れ 👨‍👩‍👧‍👦 なら、テーブル席のある店を選ぶといいですよ。"
                        "Bon appétit — and Zoë says «ça vaut le détour» 🇯🇵🇫🇷! "
                        "Combining: e\u0301, n\u0303, a\u0308\u0301; skin tones: 👋🏽 👍🏿."
                    ),
                ]
            )
        ],
    )

    truncated = Sample(
        "A turn cut mid-content by max_output_tokens (finish_reason length).",
        [
            ModelTurn(
                [
                    analysis(
                        "The user asks for a detailed history of the printing press. This "
                        "will be long: Gutenberg around 1440, movable metal type, oil-based "
                        "ink, the spread across Europe, and the effects on literacy."
                    ),
                    final(
                        "The printing press with movable metal type was developed by Johannes "
                        "Gutenberg in Mainz around 1440. He combined several existing "
                        "technologies — the screw press used for wine and olive oil, "
                        "oil-based inks, and a hand mould for casting uniform letters — into a "
                        "system that could produce books far faster than scribes.\n\n"
                        "By 1500, presses were operating in more than 250 European cities and "
                        "had printed an estimated twenty million volumes. The consequences "
                        "reached far beyond books: standardized texts helped the Reformation "
                        "spread, scientific results could be shared and checked, and literacy "
                        "rose steadily over the following centuries."
                    ),
                ],
                finish_reason="length",
                cut_at=120,
            )
        ],
        max_output_tokens=120,
    )

    demo = Sample(
        "Demo: reasoning, a weather function call, its output, then reasoning and an answer.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user is planning a weekend walk in Lisbon and asks what to wear. "
                        "I should check the forecast first: call get_weather for Lisbon."
                    ),
                    preamble("Let me check the weather in Lisbon for you."),
                    function_call("get_weather", {"location": "Lisbon, PT", "unit": "celsius"}),
                ]
            ),
            ToolResult(
                '{"location": "Lisbon, PT", "temperature": 21, "unit": "celsius", '
                '"conditions": "sunny", "wind_kmh": 24, "forecast": [{"day": "Saturday", '
                '"conditions": "sunny", "high": 23, "low": 15}, {"day": "Sunday", '
                '"conditions": "partly cloudy", "high": 20, "low": 14}]}'
            ),
            ModelTurn(
                [
                    analysis(
                        "Saturday sunny 23/15, Sunday partly cloudy 20/14, windy at 24 km/h. "
                        "Recommend layers, sunscreen, comfortable shoes for the hills."
                    ),
                    final(
                        "Lisbon looks lovely this weekend ☀️\n\n"
                        "- **Saturday:** sunny, 15-23 °C\n"
                        "- **Sunday:** partly cloudy, 14-20 °C\n\n"
                        "It will be breezy (around 24 km/h), so wear light layers — a T-shirt "
                        "with a thin jacket or overshirt for the mornings and evenings. Bring "
                        "sunglasses and sunscreen, and pick comfortable shoes with good grip: "
                        "the calçada pavements on Lisbon's hills get slippery."
                    ),
                ]
            ),
        ],
        tools=[GET_WEATHER],
    )

    weather_agent = Sample(
        "An agent turn: a function call (run by the client), then an MCP call (units), "
        "then the answer. Served as two responses by `harmony-stream serve`.",
        [
            ModelTurn(
                [
                    analysis(
                        "The user wants tomorrow's temperature in Paris in Fahrenheit. Get the "
                        "forecast with get_weather first; it reports celsius."
                    ),
                    function_call("get_weather", {"location": "Paris, FR", "unit": "celsius"}),
                ]
            ),
            ToolResult(
                '{"location": "Paris, FR", "temperature": 18, "unit": "celsius", '
                '"conditions": "cloudy"}'
            ),
            ModelTurn(
                [
                    analysis(
                        "18 °C and cloudy. Convert 18 celsius to fahrenheit with the units "
                        "server's convert_temperature tool."
                    ),
                    tool_call(
                        "units.convert_temperature",
                        json.dumps({"value": 18, "from_unit": "celsius", "to_unit": "fahrenheit"}),
                        content_type="<|constrain|>json",
                    ),
                ]
            ),
            ToolResult("64.4"),
            ModelTurn(
                [
                    analysis("18 °C is 64.4 °F. Answer briefly."),
                    final(
                        "Tomorrow in Paris it will be cloudy and about **64.4 °F** (18 °C) — "
                        "a light jacket should do."
                    ),
                ]
            ),
        ],
        tools=[GET_WEATHER, UNITS_MCP],
    )

    return {
        "chat_final": chat_final,
        "function_call": function_call_sample,
        "mcp_call": mcp_call,
        "mcp_failed": mcp_failed,
        "browser_python": browser_python,
        "preamble": preamble_sample,
        "unicode": unicode_sample,
        "truncated": truncated,
        "demo": demo,
        "weather_agent": weather_agent,
    }


def main() -> int:
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    written = 0
    for name, sample in samples().items():
        rendered = render_sample(enc, sample)
        paths: list[Path] = []
        if name == "demo":
            paths.append(SAMPLE_PATH)
        elif name not in CORPUS_ONLY:
            paths.append(TRANSCRIPT_DIR / f"{name}.json")
        if name in CORPUS or name in CORPUS_ONLY:
            paths.append(CORPUS_DIR / f"{name}.json")
        for path in paths:
            if write_json(path, rendered):
                written += 1
                print(f"wrote {path.relative_to(ROOT)}")
    print(f"{written} file(s) changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
