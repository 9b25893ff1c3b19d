"""Records golden parses from the oracle, openai-harmony 0.0.8's StreamableParser.

For every model turn of tests/data/transcripts/*.json (and the bundled demo
sample) and for every quirk stream defined below, the oracle parses the tokens
one by one with `strict=True` and with `strict=False`, as a completion parser
(`Role.ASSISTANT`: the prompt ends with `<|start|>assistant`). Each case is
written to tests/data/golden/<name>.json:

    {"name", "description", "oracle": "openai-harmony==0.0.8", "tokens",
     "strict":     {"deltas": [...], "error_index": int | null, "error": str | null,
                    "messages": [{"role", "name", "channel", "recipient",
                                  "content_type", "content"}, ...]},
     "non_strict": {...same...}}

`deltas[i]` is `last_content_delta` after token i, up to the first error.
`error_index` is the index of the token whose `process` raised, or
`len(tokens)` when `process_eos` raised. `messages` are the completed messages
when parsing stopped (after `process_eos` when nothing raised).

Quirk streams are built from openai-harmony's own tokens: rendered messages
and encoded header text, edited as token lists. Run after make_samples.py:

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken python scripts/record_golden.py

The output is deterministic; golden files of cases that no longer exist are removed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from make_samples import ROOT, SAMPLE_PATH, TRANSCRIPT_DIR, JsonObj, write_json
from openai_harmony import (
    Author,
    HarmonyEncoding,
    HarmonyEncodingName,
    HarmonyError,
    Message,
    Role,
    StreamableParser,
    TextContent,
    load_harmony_encoding,
)

GOLDEN_DIR = ROOT / "tests" / "data" / "golden"
ORACLE = "openai-harmony==0.0.8"

START, END, MESSAGE, RETURN, CALL = 200006, 200007, 200008, 200002, 200012
N_REGULAR = 199998


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    tokens: list[int]


# --------------------------------------------------------------------------- oracle


def message_dict(msg: Message) -> JsonObj:
    return {
        "role": msg.author.role.value,
        "name": msg.author.name,
        "channel": msg.channel,
        "recipient": msg.recipient,
        "content_type": msg.content_type,
        "content": "".join(c.text for c in msg.content if isinstance(c, TextContent)),
    }


def run_oracle(enc: HarmonyEncoding, tokens: Sequence[int], *, strict: bool) -> JsonObj:
    parser = StreamableParser(enc, Role.ASSISTANT, strict=strict)
    deltas: list[str | None] = []
    error_index: int | None = None
    error: str | None = None
    for i, token in enumerate(tokens):
        try:
            parser.process(token)
        except HarmonyError as e:
            error_index, error = i, str(e)
            break
        deltas.append(parser.last_content_delta)
    else:
        try:
            parser.process_eos()
        except HarmonyError as e:
            error_index, error = len(tokens), str(e)
    return {
        "deltas": deltas,
        "error_index": error_index,
        "error": error,
        "messages": [message_dict(m) for m in parser.messages],
    }


def golden(enc: HarmonyEncoding, case: Case) -> JsonObj:
    return {
        "name": case.name,
        "description": case.description,
        "oracle": ORACLE,
        "tokens": case.tokens,
        "strict": run_oracle(enc, case.tokens, strict=True),
        "non_strict": run_oracle(enc, case.tokens, strict=False),
    }


# --------------------------------------------------------------------------- transcripts


def transcript_cases() -> list[Case]:
    paths = [*sorted(TRANSCRIPT_DIR.glob("*.json")), SAMPLE_PATH]
    cases: list[Case] = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        stem = "demo_sample" if path == SAMPLE_PATH else path.stem
        turns = [t for t in data["turns"] if "tokens" in t]
        for i, turn in enumerate(turns):
            where = path.relative_to(ROOT).as_posix()
            cases.append(
                Case(
                    f"transcript_{stem}_turn{i}",
                    f"{where}, model turn {i} of {len(turns)} "
                    f"(finish_reason {turn['finish_reason']}): {data.get('description', '')}",
                    list(turn["tokens"]),
                )
            )
    return cases


# --------------------------------------------------------------------------- quirks


class Builder:
    """Token-list helpers over openai-harmony's renderer and tokenizer."""

    def __init__(self, enc: HarmonyEncoding) -> None:
        self.enc = enc
        self._by_bytes: dict[bytes, int] = {}
        for token in range(N_REGULAR):
            # surrogateescape round-trips the raw bytes of partial UTF-8 tokens.
            raw = enc.decode([token], errors="surrogateescape").encode("utf-8", "surrogateescape")
            self._by_bytes.setdefault(raw, token)

    def text(self, s: str) -> list[int]:
        """Encodes text, special-token names included (`<|channel|>` → 200005)."""
        return list(self.enc.encode(s, allowed_special="all"))

    def byte_tokens(self, raw: bytes) -> list[int]:
        """One single-byte token per byte (e.g. an emoji as four tokens)."""
        return [self.token_of(bytes([b])) for b in raw]

    def token_of(self, raw: bytes) -> int:
        """The regular token whose bytes are exactly `raw`."""
        try:
            return self._by_bytes[raw]
        except KeyError:
            raise ValueError(f"no o200k token has exactly the bytes {raw!r}") from None

    def render(self, msg: Message) -> list[int]:
        return list(self.enc.render(msg))

    def first(self, msg: Message) -> list[int]:
        """A rendered first message, without the prompt's `<|start|>assistant`."""
        tokens = self.render(msg)
        if tokens[:2] != self.text("<|start|>assistant"):
            raise ValueError(f"not an assistant message: {self.enc.decode(tokens)!r}")
        return tokens[2:]


def assistant(channel: str, text: str) -> Message:
    return Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)


def weather_call(args: str = '{"location": "Oslo, NO"}') -> Message:
    return (
        assistant("commentary", args)
        .with_recipient("functions.get_weather")
        .with_content_type("<|constrain|>json")
    )


def replace_last(tokens: list[int], old: int, new: Sequence[int]) -> list[int]:
    """`tokens` with its last token (which must be `old`) replaced by `new`."""
    if tokens[-1] != old:
        raise ValueError(f"expected token {old} at the end, got {tokens[-1]}")
    return [*tokens[:-1], *new]


Part = str | int | Sequence[int]


def quirk_cases(enc: HarmonyEncoding) -> list[Case]:
    """Token streams with the quirks of docs/architecture.md, Lenient parsing, and
    the corners around them.

    A stream is given as parts: a token id, a token list (rendered messages), or
    text, which is encoded with special-token names allowed (`"<|channel|>final"`).
    """
    b = Builder(enc)
    think_first = b.first(
        assistant("analysis", "The user wants the weather in Oslo. Call the tool.")
    )
    answer = b.render(assistant("final", "It is 12 °C and cloudy in Oslo."))
    answer_r = replace_last(answer, END, [RETURN])
    call = b.render(weather_call())
    args = '{"location": "Oslo, NO"}'
    weather = '{"temperature_c": 12}'
    emoji = "😀".encode()
    cases: list[Case] = []

    def add(name: str, description: str, *parts: Part) -> None:
        tokens: list[int] = []
        for part in parts:
            if isinstance(part, str):
                tokens.extend(b.text(part))
            elif isinstance(part, int):
                tokens.append(part)
            else:
                tokens.extend(part)
        cases.append(Case(f"quirk_{name}", description, tokens))

    # --- header layout: recipient and content type
    add(
        "recipient_after_channel",
        "Recipient after the channel, as the model writes it: "
        "<|channel|>commentary to=functions.get_weather <|constrain|>json.",
        think_first,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "recipient_after_channel_first_message",
        "The first message is a call with the recipient after the channel (header right "
        "after the prompt's <|start|>assistant).",
        "<|channel|>commentary to=functions.get_weather <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "recipient_before_channel_glued_constrain",
        "Renderer order (to= before <|channel|>) with <|constrain|>json glued to the channel.",
        think_first,
        "<|start|>assistant to=functions.get_weather<|channel|>commentary<|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "constrain_glued_to_recipient",
        "<|constrain|>json glued to the recipient: to=functions.get_weather<|constrain|>json.",
        think_first,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "constrain_spaced_from_type",
        "A space between <|constrain|> and json (strict: words left over in the header).",
        think_first,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|> json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "content_type_without_constrain",
        "A bare content type after the recipient: to=functions.get_weather json.",
        think_first,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "recipient_before_and_after_channel",
        "Two recipients, one before and one after the channel (strict: leftover words).",
        " to=functions.lookup<|channel|>commentary to=functions.get_weather <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "final_constrain_json",
        "<|channel|>final <|constrain|>json: openai-harmony reads <|constrain|>json as the "
        "recipient (harmony PR #144).",
        think_first,
        "<|start|>assistant<|channel|>final <|constrain|>json",
        MESSAGE,
        '{"temperature_c": 12, "conditions": "cloudy"}',
        RETURN,
    )
    add(
        "final_constrain_json_first_message",
        "<|channel|>final<|constrain|>json (glued) as the first message.",
        "<|channel|>final<|constrain|>json",
        MESSAGE,
        '{"ok": true}',
        RETURN,
    )
    add(
        "analysis_to_function",
        "A function call on the analysis channel: <|channel|>analysis to=functions.x "
        "(route on the recipient first).",
        think_first,
        "<|start|>assistant<|channel|>analysis to=functions.get_weather <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "python_call_after_channel",
        "Built-in python call as the model writes it: <|channel|>analysis to=python code.",
        "<|channel|>analysis to=python code",
        MESSAGE,
        "print(2 ** 10)",
        CALL,
    )
    add(
        "empty_recipient",
        "An empty recipient: <|channel|>final to=.",
        "<|channel|>final to=",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "role_repeated_in_header",
        "The model repeats the role after the prompt's <|start|>assistant: "
        "assistant<|channel|>final.",
        "assistant<|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "two_channels_in_header",
        "Two <|channel|> markers in one header: <|channel|>final<|channel|>analysis.",
        "<|channel|>final<|channel|>analysis",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "newline_in_header",
        "A newline before <|message|>: <|channel|>final\\n.",
        "<|channel|>final\n",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "special_token_in_header",
        "<|endoftext|> inside the header, before <|message|>.",
        "<|channel|>final<|endoftext|>",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "invalid_utf8_in_header",
        "A 0xff byte token inside the header (strict: header is not UTF-8).",
        "<|channel|>final",
        b.byte_tokens(b"\xff"),
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "unicode_space_before_recipient",
        "An ideographic space (U+3000) between the channel and to=.",
        "<|channel|>commentary\u3000to=functions.get_weather",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "nbsp_inside_header_words",
        "A no-break space (U+00A0) between recipient and content type: one header word.",
        "<|channel|>commentary to=functions.get_weather\u00a0json",
        MESSAGE,
        args,
        CALL,
    )

    add(
        "tabs_and_vertical_tab_in_header",
        "A tab before to= and a vertical tab (not ASCII whitespace when splitting words) "
        "between recipient and content type.",
        "<|channel|>commentary\tto=functions.get_weather\x0bjson",
        MESSAGE,
        args,
        CALL,
    )

    # --- malformed channels
    add(
        "channel_commentary_question_mark",
        "Malformed channel <|channel|>commentary? on a preamble (llama.cpp #27720).",
        "<|channel|>commentary?",
        MESSAGE,
        "Let me check the forecast.",
        END,
        call,
    )
    add(
        "channel_commentary_question_mark_call",
        "Malformed channel commentary? with a recipient after it.",
        think_first,
        "<|start|>assistant<|channel|>commentary? to=functions.get_weather <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "empty_channel_first_message",
        "An empty channel: <|channel|><|message|>.",
        "<|channel|>",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "empty_channel_later",
        "An empty channel in a later header, followed by a content type.",
        think_first,
        "<|start|>assistant<|channel|> <|constrain|>json",
        MESSAGE,
        args,
        CALL,
    )

    # --- stop tokens where a message start is expected
    add(
        "return_after_end",
        "<|return|> right after <|end|> (vLLM PR #37072).",
        think_first,
        answer,
        RETURN,
    )
    add(
        "call_after_end",
        "<|call|> right after <|end|> closing a function call.",
        think_first,
        replace_last(call, CALL, [END, CALL]),
    )
    add("end_after_end", "<|end|> twice, then the final answer.", think_first, END, answer_r)
    add(
        "return_after_return",
        "<|return|> twice at the end of the answer.",
        think_first,
        answer_r,
        RETURN,
    )
    add(
        "endoftext_after_return",
        "<|endoftext|> after the final <|return|>.",
        think_first,
        answer_r,
        "<|endoftext|>",
    )
    add(
        "only_return",
        "A completion that is only <|return|> (empty header closed by a stop token).",
        RETURN,
    )
    add("empty_stream", "No tokens at all, then end of stream.")

    # --- repeated or missing <|start|>
    add(
        "double_start_first_message",
        "<|start|><|start|>assistant as the first tokens (the prompt already has one).",
        START,
        answer_r,
    )
    add(
        "start_role_repeated_first_message",
        "<|start|>assistant again after the prompt's <|start|>assistant.",
        answer_r,
    )
    add(
        "double_start_later",
        "<|start|><|start|>assistant before the final answer.",
        think_first,
        START,
        answer_r,
    )
    add(
        "start_inside_first_header",
        "<|start|>assistant inside a started first header: "
        "<|channel|>analysis<|start|>assistant<|channel|>final<|message|>.",
        "<|channel|>analysis<|start|>assistant<|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "start_after_recipient_in_first_header",
        "<|start|>assistant after a recipient in the first header: "
        " to=functions.get_weather<|start|>assistant<|channel|>commentary<|message|>.",
        " to=functions.get_weather<|start|>assistant<|channel|>commentary",
        MESSAGE,
        args,
        CALL,
    )
    add(
        "start_inside_later_header",
        "<|start|>assistant<|start|>assistant<|channel|>final: a later header restarted "
        "after its role.",
        think_first,
        "<|start|>assistant<|start|>assistant<|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "missing_start_before_second_message",
        "<|end|><|channel|>final<|message|>...: the second message has no <|start|>assistant.",
        think_first,
        "<|channel|>final",
        MESSAGE,
        "It is 12 °C in Oslo.",
        RETURN,
    )
    add(
        "missing_role_later",
        "<|start|><|channel|>final: a later header without a role.",
        think_first,
        "<|start|><|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "stray_text_then_start",
        "Plain text after <|end|>, then <|start|>assistant and the final answer.",
        think_first,
        "Okay, let me answer.",
        answer_r,
    )
    add(
        "stray_newline_then_start",
        "A newline between <|end|> and <|start|>.",
        think_first,
        "\n",
        answer_r,
    )
    add(
        "stray_text_then_eos",
        "Plain text after <|end|>, then end of stream.",
        think_first,
        "The answer is 42.",
    )
    add(
        "stray_text_then_return",
        "Plain text after <|end|>, closed by <|return|>.",
        think_first,
        "The answer is 42.",
        RETURN,
    )

    # --- headers closed without <|message|>
    add(
        "stop_token_in_first_header",
        "<|channel|>final hello<|return|>: a stop token inside the first header.",
        "<|channel|>final hello",
        RETURN,
    )
    add(
        "stop_token_in_later_header",
        "A later header closed by <|return|> (openai-harmony non-strict drops it: no role).",
        think_first,
        "<|start|>assistant<|channel|>final Hello,  world\nagain",
        RETURN,
    )
    add(
        "stop_token_in_later_header_then_message",
        "A later header closed by <|end|>, then a well-formed final message (strict: the "
        "header swallows the next message's start).",
        think_first,
        "<|start|>assistant<|channel|>final hello",
        END,
        answer_r,
    )
    add(
        "call_in_header_without_message",
        "A function call whose header runs into the arguments without <|message|>.",
        think_first,
        '<|start|>assistant<|channel|>commentary to=functions.get_weather {"location":"Oslo"}',
        CALL,
    )
    add(
        "words_in_first_header_closed_by_call",
        "A first header closed by <|call|>: recipient and arguments, spaces collapsed, "
        "become the content.",
        '<|channel|>commentary to=functions.get_weather {"location":  "Oslo"}',
        CALL,
    )
    add(
        "call_right_after_channel",
        "<|channel|>final<|call|>: a header closed by <|call|> with nothing after the channel.",
        "<|channel|>final",
        CALL,
    )
    add(
        "end_right_after_channel",
        "<|channel|>final<|end|>: a first header closed by <|end|>.",
        "<|channel|>final",
        END,
    )
    add(
        "empty_channel_closed_by_stop",
        "<|channel|> hi<|return|>: an empty channel in a header closed by a stop token.",
        "<|channel|> hi",
        RETURN,
    )
    add(
        "constrain_in_header_closed_by_stop",
        "<|channel|>final <|constrain|>json hello<|return|>: the content type becomes content.",
        "<|channel|>final <|constrain|>json hello",
        RETURN,
    )

    # --- streams cut by max tokens
    add(
        "cut_in_first_header",
        "Stream cut in the header: <|channel|>fin, then end of stream.",
        "<|channel|>fin",
    )
    add(
        "cut_in_later_header",
        "Stream cut in a later header: <|start|>assistant<|channel|>fin, then end of stream.",
        think_first,
        "<|start|>assistant<|channel|>fin",
    )
    add(
        "cut_in_call_header",
        "Stream cut in a function call header just before <|message|>.",
        think_first,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json",
    )
    add("cut_after_start", "Stream cut right after <|start|>.", think_first, START)
    add(
        "cut_after_message_token",
        "Stream cut right after <|message|> (empty content).",
        think_first,
        "<|start|>assistant<|channel|>final",
        MESSAGE,
    )
    add(
        "cut_mid_content",
        "Stream cut in the middle of the final answer.",
        think_first,
        answer[:-4],
    )
    add(
        "cut_mid_call_arguments",
        "Stream cut in the middle of function call arguments.",
        think_first,
        b.render(weather_call('{"location": "Oslo, NO", "unit": "celsius"}'))[:-5],
    )

    # --- UTF-8 across tokens
    add(
        "emoji_as_single_bytes",
        "An emoji (U+1F600) given as four single-byte tokens in the final answer.",
        "<|channel|>final",
        MESSAGE,
        "Hi ",
        b.byte_tokens(emoji),
        " there",
        RETURN,
    )
    add(
        "multibyte_split_in_analysis",
        "Two- and three-byte characters (é, 中) split into single bytes in the analysis channel.",
        "<|channel|>analysis",
        MESSAGE,
        "caf",
        b.byte_tokens("é".encode()),
        " and ",
        b.byte_tokens("中".encode()),
        "文",
        END,
        answer_r,
    )
    add(
        "emoji_split_two_tokens",
        "An emoji as a two-byte prefix token (F0 9F) and two single bytes.",
        "<|channel|>final",
        MESSAGE,
        b.token_of(emoji[:2]),
        b.byte_tokens(emoji[2:]),
        "!",
        RETURN,
    )
    add(
        "invalid_byte_ff",
        "A 0xff byte (never valid UTF-8) in the content.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.byte_tokens(b"\xff"),
        "B",
        RETURN,
    )
    add(
        "lone_continuation_byte",
        "A lone continuation byte (0x80) in the content.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.byte_tokens(b"\x80"),
        "B",
        RETURN,
    )
    add(
        "truncated_sequence_before_end",
        "The first two bytes of a four-byte character, then <|end|>.",
        "<|channel|>analysis",
        MESSAGE,
        "A",
        b.byte_tokens(emoji[:2]),
        END,
        answer_r,
    )
    add(
        "truncated_sequence_at_eos",
        "The first three bytes of a four-byte character, then end of stream.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.byte_tokens(emoji[:3]),
    )
    add(
        "invalid_sequence_interrupted",
        "A lead byte (F0), an ASCII byte, then a continuation byte (9F).",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.byte_tokens(b"\xf0A\x9f"),
        "B",
        RETURN,
    )
    add(
        "truncated_three_byte_then_ascii",
        "E2 82 (a truncated euro sign) followed by ASCII.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.byte_tokens(b"\xe2\x82A"),
        "B",
        RETURN,
    )

    add(
        "natural_splits_in_scripts",
        "Georgian, Thai, Telugu, Amharic and Devanagari text as o200k encodes it: characters "
        "split across tokens that are not valid UTF-8 on their own.",
        "<|channel|>final",
        MESSAGE,
        "გამარჯობა! สวัสดีครับ నమస్కారం ሰላም नमस्ते 🧑🏽‍🚀",
        RETURN,
    )
    add(
        "continuation_then_character_in_one_token",
        "After ASCII, a token with a stray continuation byte then a whole character "
        "(bytes 97 E4 BA AC): the character waits for the next token.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.token_of(b"\x97\xe4\xba\xac"),
        "B",
        RETURN,
    )
    add(
        "two_continuations_then_ascii",
        "After ASCII, a token of two continuation bytes (82 AC), then ASCII: two U+FFFD, "
        "the ASCII arrives one token late.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.token_of(b"\x82\xac"),
        "B",
        "C",
        END,
    )
    add(
        "invalid_bytes_pending_at_eos",
        "Two continuation bytes then ASCII, then end of stream with bytes still held.",
        "<|channel|>final",
        MESSAGE,
        "A",
        b.token_of(b"\x82\xac"),
        "B",
    )

    # --- special tokens inside content
    add(
        "reserved_tokens_in_content",
        "Reserved and unused special tokens (<|reserved_200013|>, <|endoftext|>, "
        "<|startoftext|>) inside the content.",
        "<|channel|>final",
        MESSAGE,
        "a<|reserved_200013|>b<|endoftext|>c<|startoftext|>d<|reserved_201087|>",
        RETURN,
    )
    add(
        "structural_tokens_in_content",
        "<|start|>, <|channel|>, <|message|> and <|constrain|> inside the content.",
        "<|channel|>final",
        MESSAGE,
        "a<|start|>b<|channel|>c<|message|>d<|constrain|>e",
        RETURN,
    )

    # --- other roles
    tool_reply = (
        Message.from_author_and_content(Author.new(Role.TOOL, "functions.get_weather"), weather)
        .with_channel("commentary")
        .with_recipient("assistant")
    )
    add(
        "tool_role_header",
        "A tool message (functions.get_weather to=assistant) between a call and the answer.",
        think_first,
        call,
        b.render(tool_reply),
        answer_r,
    )
    add(
        "unknown_role_later",
        "A later header with an unknown role: <|start|>bogus<|channel|>final.",
        think_first,
        "<|start|>bogus<|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "capitalized_role_later",
        "A later header with a capitalized role: <|start|>Assistant<|channel|>final.",
        think_first,
        "<|start|>Assistant<|channel|>final",
        MESSAGE,
        "Hello.",
        RETURN,
    )
    add(
        "tool_name_without_recipient",
        "A later header with only a tool name (unknown role): "
        "<|start|>functions.get_weather<|channel|>commentary.",
        think_first,
        "<|start|>functions.get_weather<|channel|>commentary",
        MESSAGE,
        weather,
        END,
    )
    add(
        "recipient_as_role_word",
        "A later header starting with the recipient: <|start|>to=functions.get_weather"
        "<|channel|>commentary (a tool message named by it).",
        think_first,
        "<|start|>to=functions.get_weather<|channel|>commentary",
        MESSAGE,
        weather,
        END,
    )
    add(
        "tool_role_word",
        "A later header with the role word tool: <|start|>tool<|channel|>commentary.",
        think_first,
        "<|start|>tool<|channel|>commentary",
        MESSAGE,
        weather,
        END,
    )
    add(
        "user_role_later",
        "A later user message: <|start|>user<|message|>.",
        think_first,
        "<|start|>user",
        MESSAGE,
        "Thanks!",
        END,
    )
    add(
        "final_ends_with_call",
        "The final answer closed by <|call|>.",
        replace_last(answer, END, [CALL])[2:],
    )
    return cases


# --------------------------------------------------------------------------- main


def main() -> int:
    try:
        installed = f"openai-harmony=={version('openai-harmony')}"
    except PackageNotFoundError:
        installed = "no openai-harmony package"
    if installed != ORACLE:
        print(f"the oracle must be {ORACLE}, found {installed}", file=sys.stderr)
        return 1
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    cases = transcript_cases() + quirk_cases(enc)
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate case names: {sorted(n for n in names if names.count(n) > 1)}")
    changed = 0
    for case in cases:
        if any(not 0 <= tok <= 201088 for tok in case.tokens):
            raise ValueError(f"{case.name}: token id out of range")
        if write_json(GOLDEN_DIR / f"{case.name}.json", golden(enc, case)):
            changed += 1
    keep = {f"{n}.json" for n in names}
    for stale in sorted(GOLDEN_DIR.glob("*.json")):
        if stale.name not in keep:
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)}")
    print(f"{len(cases)} golden cases in {GOLDEN_DIR.relative_to(ROOT)}, {changed} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
