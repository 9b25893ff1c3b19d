"""A stack validator for one whole Responses event stream.

The rules are those of docs/architecture.md, Event contract.

``validate_stream(events)`` takes every event of one response, as the dicts of
``ResponseEvent.model_dump()``, and checks the contract:

* envelope: ``sequence_number`` 0, 1, 2, … without gap; ``response.created`` then
  ``response.in_progress``; exactly one terminal event (completed, incomplete or
  failed), last, whose status and details agree with its type;
* items: one open at a time; every ``output_item.added`` has exactly one
  ``output_item.done`` with the same id and ``output_index``; ``output_index``
  counts from 0 without gap; nothing for an item outside added..done; each item
  kind follows its own small state machine (the per-kind orders of the Event
  contract); content parts
  pair up with ``content_index`` counting from 0;
* texts: the deltas of an item add up to its ``.done`` text, which is the text of
  the closed content part and of the item in ``output_item.done``;
* result: the terminal response's ``output`` is the list of the
  ``output_item.done`` items, in order (full equality);
* schema: each event validates as openai-python's ``ResponseStreamEvent`` (and
  round-trips unchanged, with no field the type does not know besides those the
  Event contract documents); the final response validates as ``Response``.

It raises ``AssertionError`` naming the event (index, sequence number, type)
and the rule, and returns the final response dict when the stream is valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .common import (
    ENVELOPE,
    TERMINAL,
    Event,
    Path,
    event_adapter,
    event_classes,
    response_adapter,
    unknown_fields,
    where,
)

__all__ = ["ID_PREFIX", "LIFECYCLES", "validate_stream"]

# Id prefixes of the Event contract (mcp_list_tools has none there: not checked).
ID_PREFIX = {
    "reasoning": "rs_",
    "message": "msg_",
    "function_call": "fc_",
    "mcp_call": "mcp_",
    "code_interpreter_call": "ci_",
    "web_search_call": "ws_",
}

ADDED, CLOSED = "added", "closed"


def _text_lifecycle(part: str) -> dict[str, dict[str, str]]:
    return {
        ADDED: {"content_part.added": "part"},
        "part": {f"{part}.delta": "part", f"{part}.done": "text_done"},
        "text_done": {"content_part.done": "part_done"},
        "part_done": {"content_part.added": "part", "output_item.done": CLOSED},
    }


# item type -> state -> {event type without "response.": next state}. An item starts
# in ADDED (after output_item.added) and must reach CLOSED (output_item.done).
LIFECYCLES: dict[str, dict[str, dict[str, str]]] = {
    "reasoning": _text_lifecycle("reasoning_text"),
    "message": _text_lifecycle("output_text"),
    "function_call": {
        ADDED: {
            "function_call_arguments.delta": "args",
            "function_call_arguments.done": "args_done",
        },
        "args": {
            "function_call_arguments.delta": "args",
            "function_call_arguments.done": "args_done",
        },
        "args_done": {"output_item.done": CLOSED},
    },
    "mcp_call": {
        ADDED: {"mcp_call.in_progress": "args"},
        "args": {"mcp_call_arguments.delta": "args", "mcp_call_arguments.done": "args_done"},
        # output_item.done straight from args_done: the call was cut (status incomplete).
        "args_done": {
            "mcp_call.completed": "ran_ok",
            "mcp_call.failed": "ran_failed",
            "output_item.done": CLOSED,
        },
        "ran_ok": {"output_item.done": CLOSED},
        "ran_failed": {"output_item.done": CLOSED},
    },
    "code_interpreter_call": {
        ADDED: {"code_interpreter_call.in_progress": "code"},
        "code": {
            "code_interpreter_call_code.delta": "code",
            "code_interpreter_call_code.done": "code_done",
        },
        "code_done": {"code_interpreter_call.interpreting": "running", "output_item.done": CLOSED},
        "running": {"code_interpreter_call.completed": "ran_ok", "output_item.done": CLOSED},
        "ran_ok": {"output_item.done": CLOSED},
    },
    "web_search_call": {
        ADDED: {"web_search_call.in_progress": "in_progress"},
        "in_progress": {"web_search_call.searching": "running", "output_item.done": CLOSED},
        "running": {"web_search_call.completed": "ran_ok", "output_item.done": CLOSED},
        "ran_ok": {"output_item.done": CLOSED},
    },
    "mcp_list_tools": {
        ADDED: {"mcp_list_tools.in_progress": "listing"},
        "listing": {"mcp_list_tools.completed": "ran_ok", "mcp_list_tools.failed": "ran_failed"},
        "ran_ok": {"output_item.done": CLOSED},
        "ran_failed": {"output_item.done": CLOSED},
    },
}

# (item type, state when output_item.done arrives) -> (allowed statuses, statuses that
# mean "cut off mid-message": such an item must be the last one of a response that
# did not complete). A call still waiting for its result when the model moves on or
# the response ends is not "cut": it closes failed (mcp) or incomplete (python, browser).
# A python or browser call whose tool failed closes "failed" (the Responses API has no
# failed event for them, so output_item.done follows interpreting/searching).
_DONE_STATUS: dict[tuple[str, str], tuple[set[str | None], set[str | None]]] = {
    ("reasoning", "part_done"): ({"completed", "incomplete"}, {"incomplete"}),
    ("message", "part_done"): ({"completed", "incomplete"}, {"incomplete"}),
    ("function_call", "args_done"): ({"completed", "incomplete"}, {"incomplete"}),
    ("mcp_call", "args_done"): ({"incomplete"}, {"incomplete"}),
    ("mcp_call", "ran_ok"): ({"completed"}, set()),
    ("mcp_call", "ran_failed"): ({"failed"}, set()),
    ("code_interpreter_call", "code_done"): ({"incomplete"}, {"incomplete"}),
    ("code_interpreter_call", "running"): ({"incomplete", "failed"}, set()),
    ("code_interpreter_call", "ran_ok"): ({"completed"}, set()),
    ("web_search_call", "in_progress"): ({"incomplete"}, {"incomplete"}),
    ("web_search_call", "running"): ({"incomplete", "failed"}, set()),
    ("web_search_call", "ran_ok"): ({"completed"}, set()),
    ("mcp_list_tools", "ran_ok"): ({None}, set()),
    ("mcp_list_tools", "ran_failed"): ({None}, set()),
}

# Item fields that must not change between output_item.added and output_item.done.
_STABLE_FIELDS = {
    "message": ("role", "phase"),
    "function_call": ("call_id", "name"),
    "mcp_call": ("server_label", "name"),
    "code_interpreter_call": ("container_id",),
    "web_search_call": ("action",),
    "mcp_list_tools": ("server_label",),
}

# The part type, delta event and done event of the text kinds.
_TEXT_KINDS = {
    "reasoning": (
        "reasoning_text",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
    ),
    "message": ("output_text", "response.output_text.delta", "response.output_text.done"),
}
# The streamed argument-like field of the call kinds: delta event, done event, done field.
_ARG_KINDS = {
    "function_call": (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "arguments",
    ),
    "mcp_call": (
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "arguments",
    ),
    "code_interpreter_call": (
        "response.code_interpreter_call_code.delta",
        "response.code_interpreter_call_code.done",
        "code",
    ),
}

# Fields openai-python's types do not have but the Event contract asks for:
# (event type, path) -> names.
DOCUMENTED_EXTRAS: dict[tuple[str, Path], set[str]] = {
    ("response.function_call_arguments.done", ()): {"name"},
}


def _short_errors(e: ValidationError) -> str:
    errs = e.errors()
    shown = "; ".join(
        f"{'.'.join(map(str, x['loc']))}: {x['msg']} (got {x.get('input')!r})" for x in errs[:3]
    )
    return shown + (f"; and {len(errs) - 3} more" if len(errs) > 3 else "")


def _spelled(path: Path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


@dataclass
class _Item:
    kind: str
    item_id: str
    output_index: int
    added: dict[str, Any]
    state: str = ADDED
    parts: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""  # the open part's (or the call's) accumulated deltas
    logprobs: list[Any] = field(default_factory=list)
    done_text: str | None = None  # from the *.done event
    done_logprobs: list[Any] | None = None


class _Checker:
    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.i = 0
        self.open: _Item | None = None
        self.closed: dict[str, _Item] = {}
        self.added_ids: list[str] = []
        self.done_items: list[dict[str, Any]] = []
        self.cut_at: int | None = None  # index of an item closed as cut off

    # -- reporting -----------------------------------------------------------------
    def fail(self, msg: str) -> None:
        ev = self.events[self.i] if self.i < len(self.events) else {}
        raise AssertionError(f"{where(self.i, ev)}: {msg}")

    def expect(self, cond: bool, msg: str) -> None:
        if not cond:
            self.fail(msg)

    # -- whole stream --------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        events = self.events
        if len(events) < 3:
            raise AssertionError(f"a stream has at least created, in_progress, terminal: {events}")
        for self.i, ev in enumerate(events):
            self.expect(isinstance(ev, dict), f"an event is a dict, got {type(ev).__name__}")
            self.expect(
                ev.get("sequence_number") == self.i,
                f"sequence_number must be {self.i} (0, 1, 2, … without gap), "
                f"got {ev.get('sequence_number')!r}",
            )
            self.check_schema(ev)
        for self.i, ev in enumerate(events):
            self.step(ev)
        self.i = len(events) - 1
        return self.check_final(events[-1])

    def check_schema(self, ev: Event) -> None:
        cls = event_classes().get(ev.get("type"))  # type: ignore[arg-type]
        self.expect(cls is not None, "not a valid openai ResponseStreamEvent: unknown type")
        assert cls is not None
        try:
            cls.model_validate(ev)
        except ValidationError as e:
            errors = _short_errors(e)
        else:
            errors = ""
        self.expect(not errors, f"not a valid openai {cls.__name__}: {errors}")
        model = event_adapter().validate_python(ev)
        self.expect(model.type == ev["type"], f"validated as {model.type!r}")
        dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        self.expect(
            dumped == ev,
            f"does not round-trip through openai-python unchanged: {dumped} != {ev}",
        )
        for path, names in unknown_fields(model):
            unknown = names - DOCUMENTED_EXTRAS.get((ev["type"], path), set())
            self.expect(
                not unknown, f"fields unknown to openai-python at {_spelled(path)}: {unknown}"
            )

    # -- one event -----------------------------------------------------------------
    def step(self, ev: Event) -> None:
        etype: str = ev["type"]
        last = len(self.events) - 1
        if self.i == 0:
            self.expect(etype == "response.created", "the first event must be response.created")
            self.check_envelope_response(ev, "in_progress")
            self.expect(ev["response"]["output"] == [], "response.created has no output yet")
            return
        if self.i == 1:
            self.expect(
                etype == "response.in_progress", "the second event must be response.in_progress"
            )
            self.check_envelope_response(ev, "in_progress")
            self.expect(ev["response"]["output"] == [], "response.in_progress has no output yet")
            return
        if etype in TERMINAL:
            self.expect(self.i == last, f"{etype} must be the last event (index {last})")
            return
        self.expect(
            self.i != last,
            f"the last event must be a terminal event ({', '.join(TERMINAL)}), got {etype!r}",
        )
        self.expect(etype not in ENVELOPE, f"{etype} may appear only once, at its place")
        self.expect(etype.startswith("response."), f"unexpected event type {etype!r}")
        short = etype.removeprefix("response.")
        if short == "output_item.added":
            self.item_added(ev)
            return
        item = self.open
        if short == "output_item.done":
            self.expect(item is not None, "output_item.done with no item open")
            assert item is not None
            self.expect(
                ev["item"].get("id") == item.item_id,
                f"output_item.done for {ev['item'].get('id')!r} while {item.item_id!r} is open",
            )
        else:
            item_id = ev.get("item_id")
            if item is None or item_id != item.item_id:
                if item_id in self.closed:
                    self.fail(f"event for item {item_id!r} after its output_item.done")
                self.fail(
                    f"item_id {item_id!r} is not the open item "
                    f"({item.item_id if item else 'none open'!r})"
                )
            assert item is not None
        self.expect(
            ev.get("output_index") == item.output_index,
            f"output_index {ev.get('output_index')!r} != {item.output_index} of item "
            f"{item.item_id!r}",
        )
        table = LIFECYCLES[item.kind]
        allowed = table.get(item.state, {})
        self.expect(
            short in allowed,
            f"{short} not allowed for {item.kind} {item.item_id!r} in state {item.state!r}; "
            f"expected one of {sorted(allowed)}",
        )
        before = item.state
        self.payload(item, ev)
        item.state = allowed[short]
        if short == "output_item.done":
            self.item_done(item, ev, before)

    def check_envelope_response(self, ev: Event, status: str) -> None:
        resp = ev.get("response")
        self.expect(isinstance(resp, dict), "an envelope event carries a response")
        assert isinstance(resp, dict)
        self.expect(
            resp["status"] == status, f"response.status must be {status!r}, got {resp['status']!r}"
        )
        first = self.events[0]["response"]
        for key in ("id", "created_at", "model"):
            self.expect(
                resp.get(key) == first.get(key),
                f"response.{key} {resp.get(key)!r} differs from response.created's "
                f"{first.get(key)!r}",
            )

    def item_added(self, ev: Event) -> None:
        item = ev["item"]
        kind = item.get("type")
        item_id = item.get("id")
        self.expect(
            self.open is None,
            f"output_item.added for {item_id!r} while {self.open.item_id if self.open else ''!r} "
            "is still open (items do not overlap)",
        )
        self.expect(kind in LIFECYCLES, f"unexpected item type {kind!r}")
        self.expect(isinstance(item_id, str) and item_id != "", "an item needs a non-empty id")
        self.expect(
            item_id not in self.added_ids, f"item id {item_id!r} was already used by another item"
        )
        prefix = ID_PREFIX.get(kind)
        self.expect(
            prefix is None or item_id.startswith(prefix),
            f"{kind} id {item_id!r} must start with {prefix!r}",
        )
        self.expect(
            ev.get("output_index") == len(self.added_ids),
            f"output_index must be {len(self.added_ids)} (items counted from 0 in order "
            f"of output_item.added), got {ev.get('output_index')!r}",
        )
        self.expect(
            self.cut_at is None,
            f"item {self.done_items[-1].get('id') if self.done_items else ''!r} was cut off "
            "(status incomplete mid-message); no item may follow it",
        )
        if kind != "mcp_list_tools":
            self.expect(
                item.get("status") == "in_progress",
                f"an added item has status 'in_progress', got {item.get('status')!r}",
            )
        if kind in _TEXT_KINDS:
            self.expect(item.get("content") == [], "an added item has no content yet")
        if kind in _ARG_KINDS:
            key = _ARG_KINDS[kind][2]
            self.expect(item.get(key) in ("", None), f"an added item has no {key} yet")
        if kind == "function_call":
            self.expect(
                str(item.get("call_id", "")).startswith("call_"),
                f"call_id must start with 'call_', got {item.get('call_id')!r}",
            )
        self.added_ids.append(item_id)
        self.open = _Item(kind, item_id, ev["output_index"], item)

    def payload(self, item: _Item, ev: Event) -> None:
        etype = ev["type"]
        if item.kind in _TEXT_KINDS:
            part_type, delta_type, done_type = _TEXT_KINDS[item.kind]
            idx = len(item.parts)
            if etype == "response.content_part.added":
                self.expect(
                    ev["content_index"] == idx,
                    f"content_index must be {idx} (parts count from 0), got {ev['content_index']}",
                )
                self.expect(ev["part"]["type"] == part_type, f"part type must be {part_type!r}")
                self.expect(ev["part"]["text"] == "", "an added part has no text yet")
                item.text, item.logprobs, item.done_text, item.done_logprobs = "", [], None, None
                return
            if etype in (delta_type, done_type, "response.content_part.done"):
                self.expect(
                    ev["content_index"] == idx,
                    f"content_index must be {idx} (the open part), got {ev['content_index']}",
                )
            if etype == delta_type:
                item.text += ev["delta"]
                item.logprobs += ev.get("logprobs") or []
            elif etype == done_type:
                self.expect(
                    ev["text"] == item.text,
                    f"{etype} text {ev['text']!r} != the concatenated deltas {item.text!r}",
                )
                item.done_text = ev["text"]
                if "logprobs" in ev:
                    self.expect(
                        ev["logprobs"] == item.logprobs,
                        f"{etype} logprobs != the concatenated deltas' logprobs",
                    )
                    item.done_logprobs = ev["logprobs"]
            elif etype == "response.content_part.done":
                part = ev["part"]
                self.expect(part["type"] == part_type, f"part type must be {part_type!r}")
                self.expect(
                    part["text"] == item.done_text,
                    f"part text {part['text']!r} != {done_type} text {item.done_text!r}",
                )
                if item.done_logprobs is not None:
                    stripped = [
                        {k: v for k, v in lp.items() if k != "bytes"}
                        | {
                            "top_logprobs": [
                                {k: v for k, v in t.items() if k != "bytes"}
                                for t in lp.get("top_logprobs", [])
                            ]
                        }
                        for lp in part.get("logprobs", [])
                    ]
                    self.expect(
                        stripped == item.done_logprobs,
                        "part logprobs (without bytes) != the text done event's logprobs",
                    )
                item.parts.append(part)
        elif item.kind in _ARG_KINDS:
            delta_type, done_type, key = _ARG_KINDS[item.kind]
            if etype == delta_type:
                item.text += ev["delta"]
            elif etype == done_type:
                self.expect(
                    ev[key] == item.text,
                    f"{etype} {key} {ev[key]!r} != the concatenated deltas {item.text!r}",
                )
                item.done_text = ev[key]
                if "name" in ev:
                    self.expect(
                        ev["name"] == item.added.get("name"),
                        f"{etype} name {ev['name']!r} != the item's {item.added.get('name')!r}",
                    )

    def item_done(self, item: _Item, ev: Event, state: str) -> None:
        done = ev["item"]
        self.expect(
            done.get("type") == item.kind, f"item type changed: {item.kind} -> {done.get('type')}"
        )
        for key in _STABLE_FIELDS.get(item.kind, ()):
            self.expect(
                done.get(key) == item.added.get(key),
                f"item {key} changed between added and done: "
                f"{item.added.get(key)!r} -> {done.get(key)!r}",
            )
        if item.kind in _TEXT_KINDS:
            self.expect(
                done.get("content") == item.parts,
                f"the done item's content {done.get('content')!r} != its closed parts "
                f"{item.parts!r}",
            )
        if item.kind in _ARG_KINDS:
            key = _ARG_KINDS[item.kind][2]
            self.expect(
                done.get(key) == item.done_text,
                f"the done item's {key} {done.get(key)!r} != the done event's {item.done_text!r}",
            )
        status = done.get("status")
        allowed, cut = _DONE_STATUS[(item.kind, state)]
        self.expect(
            status in allowed,
            f"{item.kind} closed from state {state!r} must have status in "
            f"{sorted(map(str, allowed))}, got {status!r}",
        )
        if status in cut:
            self.cut_at = self.i
        if item.kind == "mcp_call":
            if status == "completed":
                self.expect(done.get("error") is None, "a completed mcp_call has no error")
            if status == "failed":
                self.expect(done.get("error") is not None, "a failed mcp_call carries its error")
        self.done_items.append(done)
        self.closed[item.item_id] = item
        self.open = None

    # -- the end -------------------------------------------------------------------
    def check_final(self, ev: Event) -> dict[str, Any]:
        etype = ev["type"]
        self.expect(etype in TERMINAL, f"the last event must be terminal, got {etype!r}")
        self.expect(
            self.open is None,
            f"item {self.open.item_id if self.open else ''!r} has no output_item.done",
        )
        self.check_envelope_response(ev, TERMINAL[etype])
        resp: dict[str, Any] = ev["response"]
        if etype == "response.completed":
            self.expect(resp.get("error") is None, "a completed response has no error")
            self.expect(
                resp.get("incomplete_details") is None,
                "a completed response has no incomplete_details",
            )
            self.expect(
                self.cut_at is None, "a completed response has no item cut off (incomplete)"
            )
        elif etype == "response.incomplete":
            details = resp.get("incomplete_details") or {}
            self.expect(bool(details.get("reason")), "response.incomplete gives a reason")
        else:
            err = resp.get("error") or {}
            self.expect(
                bool(err.get("code")) and isinstance(err.get("message"), str),
                f"response.failed carries an error with code and message, got {err!r}",
            )
        output = resp.get("output")
        final_ids = [x.get("id") for x in output or []]
        done_ids = [x.get("id") for x in self.done_items]
        self.expect(
            self.added_ids == done_ids == final_ids,
            f"item ids differ: added {self.added_ids}, done {done_ids}, final {final_ids}",
        )
        for n, (got, want) in enumerate(zip(output or [], self.done_items, strict=True)):
            self.expect(
                got == want,
                f"response output[{n}] differs from its output_item.done item: {got} != {want}",
            )
        usage = resp.get("usage")
        self.expect(isinstance(usage, dict), "the terminal response carries usage")
        assert isinstance(usage, dict)
        self.expect(
            usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"],
            f"usage.total_tokens != input + output: {usage}",
        )
        self.expect(
            0 <= usage["output_tokens_details"]["reasoning_tokens"] <= usage["output_tokens"],
            f"usage: 0 <= reasoning_tokens <= output_tokens: {usage}",
        )
        self.expect(
            0 <= usage["input_tokens_details"]["cached_tokens"] <= usage["input_tokens"],
            f"usage: 0 <= cached_tokens <= input_tokens: {usage}",
        )
        try:
            model = response_adapter().validate_python(resp)
        except ValidationError as e:
            errors = _short_errors(e)
        else:
            errors = ""
        self.expect(not errors, f"the final response is not a valid openai Response: {errors}")
        dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        self.expect(dumped == resp, "the final response does not round-trip through openai")
        return resp


def validate_stream(events: list[Event]) -> dict[str, Any]:
    """Checks one whole event stream; returns the terminal event's response dict."""
    return _Checker(events).run()
