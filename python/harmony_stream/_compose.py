"""Making transcripts: Harmony messages, or a Responses API response, to tokens.

Two inputs (docs/architecture.md, Making a transcript):

* a **messages document** ``{"tools": [...], "max_output_tokens": N, "messages":
  [...]}``: assistant messages ``{"channel", "recipient"?, "content_type"?,
  "content"}`` and tool messages ``{"role": "tool", "name": RECIPIENT, "content"
  | "error"}``. A tool message answers the call just before it and ends the
  model's turn;
* a **Responses API response** (or its ``output`` list): each item becomes the
  Harmony message gpt-oss writes for it, the exact inverse of the engine's
  routing, so replaying the transcript gives the same items back.

A turn's messages are rendered as openai-harmony 0.0.8 renders a message
(``<|start|>assistant[ to=RECIPIENT]<|channel|>CHANNEL[ TYPE]<|message|>CONTENT``),
without the ``<|start|>assistant`` of the turn's first message (the prompt
holds it: a transcript's tokens are the model's output after it). The turn's
last message ends with ``<|call|>`` when it is a call and ``<|return|>``
otherwise (the model's stop tokens); every other message ends with ``<|end|>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._native import CHANNELS, TOOL_TYPES, ResponseStream, Vocab
from ._types import MessagesDocument
from .errors import HarmonyStreamError, InvalidTokenError
from .transcript import MAX_OUTPUT_TOKENS, TranscriptError, _max_output_tokens, parse_transcript
from .transcript import _show as _show

__all__ = ["dumps_transcript", "from_document", "from_messages", "from_response"]

_SPECIALS = (
    "<|start|>",
    "<|channel|>",
    "<|constrain|>",
    "<|message|>",
    "<|end|>",
    "<|call|>",
    "<|return|>",
)
_CONSTRAIN = "<|constrain|>"
_ASSISTANT_KEYS = ("role", "channel", "recipient", "content_type", "content")
_TOOL_KEYS = ("role", "name", "content", "error")
_TRANSCRIPT_KEYS = ("turns", "tokens", "finish_reason")
# What each built-in call is written as (docs/architecture.md, Routing).
_BROWSER = {"search": "browser.search", "open_page": "browser.open"}
_FIND = ("find", "find_in_page")
# Recipients that do not read back as an MCP call.
_NOT_MCP = ("python", "browser.search", "browser.open", "browser.find")


def _special_ids(vocab: Vocab) -> dict[str, int]:
    """The ids of the special tokens the renderer writes, read from the vocabulary."""
    found: dict[str, int] = {}
    for token in range(len(vocab) - 1, vocab.n_regular - 1, -1):
        try:
            text = vocab.token_bytes(token).decode("utf-8", "replace")
        except InvalidTokenError:  # a gap of a reduced vocabulary
            continue
        if text in _SPECIALS:
            found[text] = token
    missing = [s for s in _SPECIALS if s not in found]
    if missing:  # pragma: no cover (the core always defines them)
        raise TranscriptError(f"the vocabulary has no {', '.join(missing)} token")
    return found


# --------------------------------------------------------------------------- messages


class _Turn:
    """The assistant messages of one completion, and the tool result that ends it."""

    __slots__ = ("messages", "result")

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.result: dict[str, str | None] | None = None


def _opt_str(msg: Mapping[str, Any], key: str, where: str) -> str | None:
    value = msg.get(key)
    if value is not None and not isinstance(value, str):
        raise TranscriptError(f"{where}: '{key}' must be a string, not {_show(value)}")
    return value


def _header_word(value: str, key: str, where: str) -> None:
    """A recipient or content type is one word of the header."""
    body = value.removeprefix(_CONSTRAIN) if key == "content_type" else value
    if not body or any(c.isspace() for c in body) or "<" in body:
        raise TranscriptError(
            f"{where}: '{key}' must be one word with no spaces and no '<', not {_show(value)}"
        )


def _check_assistant(msg: Mapping[str, Any], where: str) -> dict[str, str]:
    unknown = [k for k in msg if k not in _ASSISTANT_KEYS]
    if unknown:
        raise TranscriptError(
            f"{where}: unknown key {_show(unknown[0])} (an assistant message has "
            f"{', '.join(_ASSISTANT_KEYS)})"
        )
    channel = msg.get("channel")
    if channel not in CHANNELS:
        what = "missing 'channel'" if "channel" not in msg else f"channel {_show(channel)}"
        raise TranscriptError(f"{where}: {what}: the channel is one of {', '.join(CHANNELS)}")
    content = msg.get("content")
    if not isinstance(content, str):
        what = "missing 'content'" if "content" not in msg else f"'content' is {_show(content)}"
        raise TranscriptError(f"{where}: {what}: the content is a string")
    out = {"channel": str(channel), "content": content}
    recipient = _opt_str(msg, "recipient", where)
    content_type = _opt_str(msg, "content_type", where)
    if recipient is not None:
        _header_word(recipient, "recipient", where)
        out["recipient"] = recipient
    if content_type is not None:
        if recipient is None:
            raise TranscriptError(
                f"{where}: a 'content_type' needs a 'recipient' (openai-harmony 0.0.8 reads "
                "a content type with no recipient as the recipient)"
            )
        _header_word(content_type, "content_type", where)
        out["content_type"] = content_type
    return out


def _check_tool(msg: Mapping[str, Any], where: str, turn: _Turn | None) -> dict[str, str | None]:
    unknown = [k for k in msg if k not in _TOOL_KEYS]
    if unknown:
        raise TranscriptError(
            f"{where}: unknown key {_show(unknown[0])} (a tool message has {', '.join(_TOOL_KEYS)})"
        )
    call = turn.messages[-1] if turn is not None and turn.messages else None
    if call is None or "recipient" not in call:
        raise TranscriptError(
            f"{where}: a tool message answers the call just before it, and the message "
            "before this one is not a call (an assistant message with a 'recipient')"
        )
    name = msg.get("name")
    if name != call["recipient"]:
        raise TranscriptError(
            f"{where}: 'name' must be the recipient of the call it answers, "
            f"{_show(call['recipient'])}, not {_show(name)}"
        )
    content = _opt_str(msg, "content", where)
    error = _opt_str(msg, "error", where)
    if (content is None) == (error is None):
        raise TranscriptError(
            f"{where}: a tool message has either 'content' (the tool's output) or 'error'"
            + (", not both" if content is not None else "")
        )
    return {"output": content, "error": error}


def _turns(messages: Any, source: str) -> list[_Turn]:
    if not isinstance(messages, list) or not messages:
        raise TranscriptError(f"{source}: 'messages' must be a non-empty list")
    turns: list[_Turn] = []
    turn: _Turn | None = None
    for i, msg in enumerate(messages):
        where = f"{source}: messages[{i}]"
        if not isinstance(msg, dict):
            raise TranscriptError(f"{where} must be an object, not {_show(msg)}")
        role = msg.get("role", "assistant")
        if role == "tool":
            result = _check_tool(msg, where, turn)
            assert turn is not None
            turn.result = result
            turn = None
        elif role == "assistant":
            if turn is not None and turn.messages and "recipient" in turn.messages[-1]:
                raise TranscriptError(
                    f"{where}: messages[{i - 1}] is a call "
                    f"(to {turn.messages[-1]['recipient']}), so the next message is its "
                    f'result: {{"role": "tool", "name": '
                    f'{json.dumps(turn.messages[-1]["recipient"])}, "content": ...}}'
                )
            if turn is None:
                turn = _Turn()
                turns.append(turn)
            turn.messages.append(_check_assistant(msg, where))
        else:
            raise TranscriptError(
                f"{where}: role {_show(role)}: a transcript holds what the model writes "
                "(role assistant, the default) and the tools' results (role tool)"
            )
    return turns


def _check_tools(vocab: Vocab, tools: Any, source: str) -> list[dict[str, Any]]:
    """The request's tools, as the engine takes them (it is the one judge)."""
    if not isinstance(tools, list):
        raise TranscriptError(f"{source}: 'tools' must be a list of tools, not {_show(tools)}")
    try:
        ResponseStream(vocab, tools=tools)
    except (HarmonyStreamError, TypeError) as e:
        raise TranscriptError(f"{source}: {e}") from e
    return tools


def _render(vocab: Vocab, turn: _Turn, ids: dict[str, int]) -> list[int]:
    """One completion: openai-harmony's rendering of each message, with the model's ends."""
    assistant = vocab.encode("assistant")
    tokens: list[int] = []
    last = len(turn.messages) - 1
    for j, msg in enumerate(turn.messages):
        if j:
            tokens.append(ids["<|start|>"])
            tokens += assistant
        recipient = msg.get("recipient")
        if recipient is not None:
            tokens += vocab.encode(f" to={recipient}")
        tokens.append(ids["<|channel|>"])
        tokens += vocab.encode(msg["channel"])
        content_type = msg.get("content_type")
        if content_type is not None:
            if content_type.startswith(_CONSTRAIN):
                tokens += vocab.encode(" ")
                tokens.append(ids[_CONSTRAIN])
                tokens += vocab.encode(content_type[len(_CONSTRAIN) :])
            else:
                tokens += vocab.encode(f" {content_type}")
        tokens.append(ids["<|message|>"])
        tokens += vocab.encode(msg["content"])
        if j < last:
            tokens.append(ids["<|end|>"])
        else:
            tokens.append(ids["<|call|>" if recipient is not None else "<|return|>"])
    return tokens


def _compose(
    vocab: Vocab,
    turns: list[_Turn],
    tools: list[dict[str, Any]],
    max_output_tokens: int | None,
    extra: Mapping[str, Any],
    source: str,
) -> dict[str, Any]:
    ids = _special_ids(vocab)
    out: dict[str, Any] = dict(extra)
    out["tools"] = tools
    if max_output_tokens is not None:
        out["max_output_tokens"] = max_output_tokens
    rendered: list[dict[str, Any]] = []
    for turn in turns:
        rendered.append({"tokens": _render(vocab, turn, ids), "finish_reason": "stop"})
        if turn.result is not None:
            rendered.append({"tool_output": turn.result})
    out["turns"] = rendered
    parse_transcript(out, source)  # the transcript format's own checks, once more
    return out


def from_messages(
    vocab: Vocab, doc: MessagesDocument | Mapping[str, Any], *, source: str = "<messages>"
) -> dict[str, Any]:
    """The transcript (as a JSON-ready dict) of a messages document.

    Raises `TranscriptError` naming ``messages[i]`` (after `source`) for a
    document that is not one: an unknown channel, a tool message not right
    after a call or naming another recipient, a call not followed by its
    result, tools the engine refuses, ...
    """
    if not isinstance(doc, Mapping):
        raise TranscriptError(f"{source}: a messages document is a JSON object, not {_show(doc)}")
    if "messages" not in doc:
        raise TranscriptError(f"{source}: missing 'messages'")
    mot = _max_output_tokens(doc, source)
    for key in _TRANSCRIPT_KEYS:
        if key in doc:
            raise TranscriptError(
                f"{source}: '{key}' belongs to a transcript; a messages document has "
                "'messages' (and 'tools', 'max_output_tokens')"
            )
    tools = _check_tools(vocab, doc.get("tools", []), source)
    turns = _turns(doc["messages"], source)
    # Other keys (a description...) are kept, as a transcript keeps them.
    extra = {k: v for k, v in doc.items() if k not in ("messages", "tools", "max_output_tokens")}
    return _compose(vocab, turns, tools, mot, extra, source)


# --------------------------------------------------------------------------- responses


def _texts(parts: Any, kinds: tuple[str, ...], field: str, where: str) -> str | None:
    """The concatenated text of the parts of the given types (None: no list)."""
    if parts is None:
        return None
    if not isinstance(parts, list):
        raise TranscriptError(f"{where}: '{field}' must be a list, not {_show(parts)}")
    out: list[str] = []
    for k, part in enumerate(parts):
        if not isinstance(part, dict):
            raise TranscriptError(f"{where}: {field}[{k}] must be an object, not {_show(part)}")
        if part.get("type") not in kinds:
            continue
        key = part["type"] if part["type"] in ("refusal", "logs") else "text"
        text = part.get(key)
        if not isinstance(text, str):
            raise TranscriptError(f"{where}: {field}[{k}].{key} must be a string")
        out.append(text)
    return "".join(out)


def _str_field(item: Mapping[str, Any], key: str, where: str, *, word: bool = False) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        what = f"missing '{key}'" if key not in item else f"'{key}' is {_show(value)}"
        raise TranscriptError(f"{where}: {what}; it must be a string")
    if word and (not value or any(c.isspace() for c in value) or "<" in value):
        raise TranscriptError(
            f"{where}: '{key}' {_show(value)} cannot be written in a Harmony header "
            "(it must be one word with no spaces and no '<')"
        )
    return value


def _mcp_error(error: Any, where: str) -> str:
    """An mcp_call's error: a string, or the engine's ``{"content": [{"text"}]}``."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        text = _texts(error.get("content"), ("text",), "error.content", where)
        if text is not None:
            return text
    raise TranscriptError(f"{where}: 'error' must be a string or {{\"content\": [...]}}")


def _logs(item: Mapping[str, Any], where: str) -> str:
    outputs = item.get("outputs") or []
    if not isinstance(outputs, list):
        raise TranscriptError(f"{where}: 'outputs' must be a list, not {_show(outputs)}")
    return _texts(outputs, ("logs",), "outputs", where) or ""


def _browser_call(item: Mapping[str, Any], where: str) -> tuple[str, str]:
    """(recipient, arguments) of a web_search_call, from its action."""
    action = item.get("action")
    if not isinstance(action, dict):
        raise TranscriptError(f"{where}: 'action' must be an object, not {_show(action)}")
    kind = action.get("type")
    args: dict[str, str] = {}
    if kind == "search":
        recipient = _BROWSER["search"]
        if action.get("query") is not None:
            args["query"] = _str_field(action, "query", f"{where}: action")
    elif kind == "open_page":
        recipient = _BROWSER["open_page"]
        if action.get("url") is not None:
            args["url"] = _str_field(action, "url", f"{where}: action")
    elif kind in _FIND:
        recipient = "browser.find"
        args["pattern"] = _str_field(action, "pattern", f"{where}: action")
        if action.get("url") is not None:
            args["url"] = _str_field(action, "url", f"{where}: action")
    else:
        raise TranscriptError(
            f"{where}: action type {_show(kind)}: a web search action is search, open_page "
            "or find_in_page"
        )
    return recipient, json.dumps(args, ensure_ascii=False)


_Msg = dict[str, str]
_Result = dict[str, str | None]


def _item_messages(item: Mapping[str, Any], where: str) -> tuple[_Msg | None, _Result | None, bool]:
    """(message, result, is_call) for one output item; (None, None, False) to skip it."""
    kind = item.get("type")
    status = item.get("status")
    if kind == "reasoning":
        text = _texts(item.get("content"), ("reasoning_text",), "content", where)
        if not text:  # OpenAI's reasoning items may hold only a summary
            text = _texts(item.get("summary"), ("summary_text",), "summary", where) or ""
        return {"channel": "analysis", "content": text}, None, False
    if kind == "message":
        if item.get("role", "assistant") != "assistant":
            raise TranscriptError(f"{where}: a message of the model has role assistant")
        text = _texts(item.get("content"), ("output_text", "refusal"), "content", where) or ""
        channel = "commentary" if item.get("phase") == "commentary" else "final"
        return {"channel": channel, "content": text}, None, False
    if kind == "function_call":
        name = _str_field(item, "name", where, word=True)
        msg = {
            "channel": "commentary",
            "recipient": f"functions.{name}",
            "content_type": "<|constrain|>json",
            "content": _str_field(item, "arguments", where),
        }
        return msg, None, True
    if kind == "mcp_call":
        label = _str_field(item, "server_label", where, word=True)
        name = _str_field(item, "name", where, word=True)
        recipient = f"{label}.{name}"
        if "." in label or label == "functions" or recipient in _NOT_MCP:
            raise TranscriptError(
                f"{where}: the call {recipient} would read back as another kind of call (an "
                "MCP server label has no '.' and is not functions; python and "
                "browser.search/open/find are built-in tools)"
            )
        msg = {
            "channel": "commentary",
            "recipient": recipient,
            "content_type": "<|constrain|>json",
            "content": _str_field(item, "arguments", where),
        }
        result: _Result | None = None
        if item.get("error") is not None:
            result = {"output": None, "error": _mcp_error(item["error"], where)}
        elif item.get("output") is not None:
            result = {"output": _str_field(item, "output", where), "error": None}
        elif status == "completed":
            result = {"output": "", "error": None}
        elif status == "failed":
            result = {"output": None, "error": ""}
        return msg, result, True
    if kind == "code_interpreter_call":
        msg = {
            "channel": "analysis",
            "recipient": "python",
            "content_type": "code",
            "content": _str_field(item, "code", where) if item.get("code") is not None else "",
        }
        logs = _logs(item, where)
        result = {
            "completed": {"output": logs, "error": None},
            "failed": {"output": None, "error": logs},
        }.get(str(status))
        return msg, result, True
    if kind == "web_search_call":
        recipient, args = _browser_call(item, where)
        msg = {"channel": "analysis", "recipient": recipient, "content_type": "code"}
        msg["content"] = args
        result = {
            "completed": {"output": "", "error": None},
            "failed": {"output": None, "error": ""},
        }.get(str(status))
        return msg, result, True
    if kind == "mcp_list_tools":  # the server's listing, not the model's output
        return None, None, False
    raise TranscriptError(
        f"{where}: item type {_show(kind)} is not one gpt-oss writes (reasoning, message, "
        "function_call, mcp_call, code_interpreter_call, web_search_call)"
    )


def _response_turns(items: Sequence[Any], source: str) -> list[_Turn]:
    turns: list[_Turn] = []
    turn: _Turn | None = None
    waiting: str | None = None  # a call with no result: nothing may follow it
    for i, item in enumerate(items):
        where = f"{source}: output[{i}]"
        if not isinstance(item, dict):
            raise TranscriptError(f"{where} must be an object, not {_show(item)}")
        if item.get("type") == "function_call_output":  # a conversation's input item
            if turn is None or waiting is None or not waiting.startswith("functions."):
                raise TranscriptError(
                    f"{where}: a function_call_output comes right after its function_call"
                )
            turn.result = {"output": _str_field(item, "output", where), "error": None}
            turn, waiting = None, None
            continue
        msg, result, is_call = _item_messages(item, where)
        if msg is None:
            continue
        if waiting is not None:
            if waiting.startswith("functions.") and turn is not None:
                # The response does not hold the function's output: an empty one.
                turn.result = {"output": "", "error": None}
                turn = None
            else:
                raise TranscriptError(
                    f"{where}: the call before it (to {waiting}) has no result (no output "
                    "or error, status neither completed nor failed), so nothing can follow it"
                )
        if turn is None:
            turn = _Turn()
            turns.append(turn)
        turn.messages.append(msg)
        waiting = None
        if result is not None:
            turn.result = result
            turn = None
        elif is_call:
            waiting = msg["recipient"]
    if not turns:
        raise TranscriptError(f"{source}: the response has no output item gpt-oss writes")
    return turns


def from_response(
    vocab: Vocab, response: Mapping[str, Any] | Sequence[Any], *, source: str = "<response>"
) -> dict[str, Any]:
    """The transcript (a JSON-ready dict) that replays as this Responses API response.

    `response` is a response object (as saved from OpenAI, vLLM or ``harmony-stream
    serve``) or its ``output`` list. Each item becomes the Harmony message gpt-oss
    writes for it; a call's output or error becomes the ``tool_output`` after its
    turn. What a response does not hold is left empty: a function's output (when
    more items follow the call), a web search's results. Its ``tools`` (those the
    engine knows) and ``max_output_tokens`` are kept. Errors name ``output[i]``.
    """
    tools: list[dict[str, Any]] = []
    mot = None
    if isinstance(response, Mapping):
        items = response.get("output")
        if not isinstance(items, list):
            raise TranscriptError(f"{source}: a response's 'output' must be a list of items")
        raw_tools = response.get("tools") or []
        if not isinstance(raw_tools, list):
            raise TranscriptError(f"{source}: a response's 'tools' must be a list")
        tools = [t for t in raw_tools if isinstance(t, dict) and t.get("type") in TOOL_TYPES]
        tools = _check_tools(vocab, tools, source)
        mot = response.get("max_output_tokens")
        if not (type(mot) is int and 1 <= mot <= MAX_OUTPUT_TOKENS):
            mot = None
    elif isinstance(response, Sequence) and not isinstance(response, (str, bytes)):
        items = list(response)
    else:
        raise TranscriptError(f"{source}: a response is an object or its output list")
    return _compose(vocab, _response_turns(items, source), tools, mot, {}, source)


def from_document(vocab: Vocab, data: Any, *, source: str = "<document>") -> dict[str, Any]:
    """A transcript from a messages document, a response object or an output list.

    What `data` is comes from its shape: an object with ``messages`` is a
    messages document, an object with ``output`` or a list is a response.
    """
    if isinstance(data, list):
        return from_response(vocab, data, source=source)
    if isinstance(data, dict):
        if "messages" in data:
            return from_messages(vocab, data, source=source)
        if "output" in data:
            return from_response(vocab, data, source=source)
        if "turns" in data or "tokens" in data:
            raise TranscriptError(f"{source}: this is already a transcript")
    raise TranscriptError(
        f"{source}: not a messages document (an object with 'messages') nor a Responses "
        "API response (an object with 'output', or the output list)"
    )


def dumps_transcript(transcript: Mapping[str, Any]) -> str:
    """The transcript as JSON text: one line per key and per turn."""
    lines = []
    for key, value in transcript.items():
        if key == "turns":
            turns = ",\n  ".join(json.dumps(t, ensure_ascii=False) for t in value)
            lines.append(f'"turns": [\n  {turns}\n]')
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{" + ",\n ".join(lines) + "}\n"
