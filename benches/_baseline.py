"""Baseline (3): what a minimal Python server does with the pieces that exist today.

openai-harmony's ``StreamableParser`` (the Rust parser behind a Python wrapper)
reads the tokens; each content delta and each item boundary becomes an
openai-python event model (``openai.types.responses.*Event``, validated by
pydantic on construction), serialized with ``model_dump_json`` into an SSE
string, as vLLM's ``api_router`` writes it.

It is written the efficient way, not as a straw man: it polls nothing per
token except ``last_content_delta`` on content tokens (never the quadratic
``messages``/``state`` getters), opens an item on ``<|message|>`` (so items
without deltas keep their lifecycle), closes it on the stop token, and keeps
the accumulated text itself. Tool calls get their full Responses lifecycle,
tool outputs included; the final ``response.completed`` carries every item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from openai.types.responses import (
    Response,
    ResponseCodeInterpreterCallCodeDeltaEvent,
    ResponseCodeInterpreterCallCodeDoneEvent,
    ResponseCodeInterpreterCallCompletedEvent,
    ResponseCodeInterpreterCallInProgressEvent,
    ResponseCodeInterpreterCallInterpretingEvent,
    ResponseCodeInterpreterToolCall,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseFunctionWebSearch,
    ResponseInProgressEvent,
    ResponseMcpCallArgumentsDeltaEvent,
    ResponseMcpCallArgumentsDoneEvent,
    ResponseMcpCallCompletedEvent,
    ResponseMcpCallFailedEvent,
    ResponseMcpCallInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseWebSearchCallCompletedEvent,
    ResponseWebSearchCallInProgressEvent,
    ResponseWebSearchCallSearchingEvent,
    response_function_web_search,
)
from openai.types.responses.mcp_tool_call_error import McpToolExecutionError
from openai.types.responses.response_code_interpreter_tool_call import OutputLogs
from openai.types.responses.response_content_part_added_event import PartReasoningText
from openai.types.responses.response_content_part_done_event import (
    PartReasoningText as DonePartReasoningText,
)
from openai.types.responses.response_output_item import McpCall
from openai.types.responses.response_reasoning_item import Content as ReasoningContent
from openai_harmony import HarmonyEncoding, Role, StreamableParser

END, CALL, RETURN, MESSAGE = 200007, 200012, 200002, 200008
STOPS = frozenset((END, CALL, RETURN))

Emit = Callable[[Any], None]


class MiniServer:
    """One response: tokens in, SSE strings appended to ``sink``."""

    def __init__(
        self,
        enc: HarmonyEncoding,
        tools: Sequence[dict[str, Any]],
        sink: list[str],
        response_id: str = "resp_baseline",
    ) -> None:
        self.enc = enc
        self.tools = list(tools)
        self.mcp_labels = {t["server_label"] for t in tools if t.get("type") == "mcp"}
        self.sink = sink
        self.seq = 0
        self.n_items = 0
        self.output: list[Any] = []
        self.response_id = response_id
        self.parser: StreamableParser | None = None
        self.kind: str | None = None  # the open item's kind
        self.item_id = ""
        self.recipient: str | None = None
        self.text: list[str] = []
        self.waiting: Any = None  # the server-run call waiting for its output
        self.output_tokens = 0

    # ------------------------------------------------------------------ plumbing

    def emit(self, event: Any) -> None:
        self.seq += 1
        self.sink.append(f"event: {event.type}\ndata: {event.model_dump_json()}\n\n")

    def _response(self, status: str) -> Response:
        return Response(
            id=self.response_id,
            created_at=0,
            model="gpt-oss-120b",
            object="response",
            output=self.output if status != "in_progress" else [],
            parallel_tool_calls=True,
            tool_choice="auto",
            tools=self.tools,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ response

    def start(self) -> None:
        resp = self._response("in_progress")
        self.emit(ResponseCreatedEvent(type="response.created", response=resp, sequence_number=0))
        self.emit(
            ResponseInProgressEvent(
                type="response.in_progress", response=resp, sequence_number=self.seq
            )
        )

    def finish(self) -> None:
        if self.kind is not None:
            self._close()
        self.emit(
            ResponseCompletedEvent(
                type="response.completed",
                response=self._response("completed"),
                sequence_number=self.seq,
            )
        )

    def feed_turn(self, tokens: Sequence[int]) -> None:
        """One model turn (a new completion): a fresh parser, one token at a time."""
        self.parser = parser = StreamableParser(self.enc, Role.ASSISTANT)
        for tok in tokens:
            parser.process(tok)
            if tok == MESSAGE:
                self._open(parser.current_channel, parser.current_recipient)
            elif tok in STOPS:
                if self.kind is not None:
                    self._close()
            elif self.kind is not None:
                delta = parser.last_content_delta
                if delta:
                    self._delta(delta)
        self.output_tokens += len(tokens)

    # ------------------------------------------------------------------ items

    def _open(self, channel: str | None, recipient: str | None) -> None:
        n = self.n_items
        self.n_items += 1
        self.text = []
        self.recipient = recipient
        seq = self.seq
        if recipient is None and channel == "analysis":
            self.kind, self.item_id = "reasoning", f"rs_{n}"
            item: Any = ResponseReasoningItem(
                id=self.item_id, type="reasoning", summary=[], content=[], status="in_progress"
            )
            part: Any = PartReasoningText(type="reasoning_text", text="")
        elif recipient is None:
            self.kind, self.item_id = "message", f"msg_{n}"
            item = ResponseOutputMessage(
                id=self.item_id,
                type="message",
                role="assistant",
                content=[],
                status="in_progress",
                phase="final_answer" if channel == "final" else "commentary",
            )
            part = ResponseOutputText(type="output_text", text="", annotations=[], logprobs=[])
        elif recipient.startswith("functions."):
            self.kind, self.item_id = "function_call", f"fc_{n}"
            item = ResponseFunctionToolCall(
                id=self.item_id,
                type="function_call",
                call_id=f"call_{n}",
                name=recipient[len("functions.") :],
                arguments="",
                status="in_progress",
            )
            part = None
        elif recipient == "python":
            self.kind, self.item_id = "code_interpreter_call", f"ci_{n}"
            item = ResponseCodeInterpreterToolCall(
                id=self.item_id,
                type="code_interpreter_call",
                code="",
                container_id="auto",
                outputs=None,
                status="in_progress",
            )
            part = None
        elif recipient.startswith("browser."):
            self.kind, self.item_id = "web_search_call", f"ws_{n}"
            item = ResponseFunctionWebSearch(
                id=self.item_id,
                type="web_search_call",
                action=response_function_web_search.ActionSearch(type="search", query=""),
                status="in_progress",
            )
            part = None
        else:
            self.kind, self.item_id = "mcp_call", f"mcp_{n}"
            label, _, name = recipient.partition(".")
            item = McpCall(
                id=self.item_id,
                type="mcp_call",
                server_label=label,
                name=name,
                arguments="",
                status="in_progress",
            )
            part = None
        idx = n
        self.emit(
            ResponseOutputItemAddedEvent(
                type="response.output_item.added", item=item, output_index=idx, sequence_number=seq
            )
        )
        if part is not None:
            self.emit(
                ResponseContentPartAddedEvent(
                    type="response.content_part.added",
                    item_id=self.item_id,
                    output_index=idx,
                    content_index=0,
                    part=part,
                    sequence_number=self.seq,
                )
            )
        elif self.kind == "mcp_call":
            self.emit(
                ResponseMcpCallInProgressEvent(
                    type="response.mcp_call.in_progress",
                    item_id=self.item_id,
                    output_index=idx,
                    sequence_number=self.seq,
                )
            )
        elif self.kind == "code_interpreter_call":
            self.emit(
                ResponseCodeInterpreterCallInProgressEvent(
                    type="response.code_interpreter_call.in_progress",
                    item_id=self.item_id,
                    output_index=idx,
                    sequence_number=self.seq,
                )
            )
        elif self.kind == "web_search_call":
            for ev in (ResponseWebSearchCallInProgressEvent, ResponseWebSearchCallSearchingEvent):
                kind = "in_progress" if ev is ResponseWebSearchCallInProgressEvent else "searching"
                self.emit(
                    ev(
                        type=f"response.web_search_call.{kind}",  # type: ignore[arg-type]
                        item_id=self.item_id,
                        output_index=idx,
                        sequence_number=self.seq,
                    )
                )

    def _delta(self, delta: str) -> None:
        self.text.append(delta)
        idx, item_id, seq = self.n_items - 1, self.item_id, self.seq
        kind = self.kind
        if kind == "reasoning":
            ev: Any = ResponseReasoningTextDeltaEvent(
                type="response.reasoning_text.delta",
                item_id=item_id,
                output_index=idx,
                content_index=0,
                delta=delta,
                sequence_number=seq,
            )
        elif kind == "message":
            ev = ResponseTextDeltaEvent(
                type="response.output_text.delta",
                item_id=item_id,
                output_index=idx,
                content_index=0,
                delta=delta,
                logprobs=[],
                sequence_number=seq,
            )
        elif kind == "function_call":
            ev = ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                item_id=item_id,
                output_index=idx,
                delta=delta,
                sequence_number=seq,
            )
        elif kind == "mcp_call":
            ev = ResponseMcpCallArgumentsDeltaEvent(
                type="response.mcp_call_arguments.delta",
                item_id=item_id,
                output_index=idx,
                delta=delta,
                sequence_number=seq,
            )
        elif kind == "code_interpreter_call":
            ev = ResponseCodeInterpreterCallCodeDeltaEvent(
                type="response.code_interpreter_call_code.delta",
                item_id=item_id,
                output_index=idx,
                delta=delta,
                sequence_number=seq,
            )
        else:  # web_search_call: the action is known only at <|call|>
            return
        self.emit(ev)

    def _close(self) -> None:
        text = "".join(self.text)
        idx, item_id, kind = self.n_items - 1, self.item_id, self.kind
        self.kind = None
        done: list[Any] = []
        if kind == "reasoning":
            part: Any = DonePartReasoningText(type="reasoning_text", text=text)
            item: Any = ResponseReasoningItem(
                id=item_id,
                type="reasoning",
                summary=[],
                content=[ReasoningContent(type="reasoning_text", text=text)],
                status="completed",
            )
            done.append(
                ResponseReasoningTextDoneEvent(
                    type="response.reasoning_text.done",
                    item_id=item_id,
                    output_index=idx,
                    content_index=0,
                    text=text,
                    sequence_number=0,
                )
            )
        elif kind == "message":
            part = ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])
            item = ResponseOutputMessage(
                id=item_id,
                type="message",
                role="assistant",
                content=[part],
                status="completed",
            )
            done.append(
                ResponseTextDoneEvent(
                    type="response.output_text.done",
                    item_id=item_id,
                    output_index=idx,
                    content_index=0,
                    text=text,
                    logprobs=[],
                    sequence_number=0,
                )
            )
        elif kind == "function_call":
            part = None
            name = (self.recipient or "")[len("functions.") :]
            item = ResponseFunctionToolCall(
                id=item_id,
                type="function_call",
                call_id=f"call_{idx}",
                name=name,
                arguments=text,
                status="completed",
            )
            done.append(
                ResponseFunctionCallArgumentsDoneEvent(
                    type="response.function_call_arguments.done",
                    item_id=item_id,
                    output_index=idx,
                    arguments=text,
                    sequence_number=0,
                )
            )
        else:
            # Server-run calls: arguments/code done now, the item after the tool ran.
            part = None
            if kind == "mcp_call":
                done.append(
                    ResponseMcpCallArgumentsDoneEvent(
                        type="response.mcp_call_arguments.done",
                        item_id=item_id,
                        output_index=idx,
                        arguments=text,
                        sequence_number=0,
                    )
                )
            elif kind == "code_interpreter_call":
                done.append(
                    ResponseCodeInterpreterCallCodeDoneEvent(
                        type="response.code_interpreter_call_code.done",
                        item_id=item_id,
                        output_index=idx,
                        code=text,
                        sequence_number=0,
                    )
                )
                done.append(
                    ResponseCodeInterpreterCallInterpretingEvent(
                        type="response.code_interpreter_call.interpreting",
                        item_id=item_id,
                        output_index=idx,
                        sequence_number=0,
                    )
                )
            self.waiting = (kind, item_id, idx, self.recipient, text)
            for ev in done:
                ev.sequence_number = self.seq
                self.emit(ev)
            return
        if part is not None:
            done.append(
                ResponseContentPartDoneEvent(
                    type="response.content_part.done",
                    item_id=item_id,
                    output_index=idx,
                    content_index=0,
                    part=part,
                    sequence_number=0,
                )
            )
        for ev in done:
            ev.sequence_number = self.seq
            self.emit(ev)
        self._item_done(item)

    def _item_done(self, item: Any) -> None:
        self.output.append(item)
        self.emit(
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=item,
                output_index=len(self.output) - 1,
                sequence_number=self.seq,
            )
        )

    def tool_output(self, output: str | None, error: str | None) -> None:
        """The result of the server-run call that ended the turn (function calls: ignored)."""
        if self.waiting is None:
            return
        kind, item_id, idx, recipient, text = self.waiting
        self.waiting = None
        common = {"item_id": item_id, "output_index": idx, "sequence_number": self.seq}
        if kind == "mcp_call":
            label, _, name = (recipient or "").partition(".")
            if error is None:
                self.emit(
                    ResponseMcpCallCompletedEvent(type="response.mcp_call.completed", **common)
                )
            else:
                self.emit(ResponseMcpCallFailedEvent(type="response.mcp_call.failed", **common))
            item: Any = McpCall(
                id=item_id,
                type="mcp_call",
                server_label=label,
                name=name,
                arguments=text,
                output=output,
                error=None
                if error is None
                else McpToolExecutionError(
                    type="mcp_tool_execution_error", content=[{"type": "text", "text": error}]
                ),
                status="completed" if error is None else "failed",
            )
        elif kind == "code_interpreter_call":
            self.emit(
                ResponseCodeInterpreterCallCompletedEvent(
                    type="response.code_interpreter_call.completed", **common
                )
            )
            item = ResponseCodeInterpreterToolCall(
                id=item_id,
                type="code_interpreter_call",
                code=text,
                container_id="auto",
                outputs=[OutputLogs(type="logs", logs=output or error or "")],
                status="completed",
            )
        else:  # web_search_call
            self.emit(
                ResponseWebSearchCallCompletedEvent(
                    type="response.web_search_call.completed", **common
                )
            )
            item = ResponseFunctionWebSearch(
                id=item_id,
                type="web_search_call",
                action=_web_action(recipient or "", text),
                status="completed",
            )
        self._item_done(item)


def _web_action(recipient: str, arguments: str) -> Any:
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    action = recipient.partition(".")[2]
    if action == "open":
        return response_function_web_search.ActionOpenPage(
            type="open_page", url=f"cursor:{args.get('cursor', '')}"
        )
    if action == "find":
        return response_function_web_search.ActionFind(
            type="find_in_page", pattern=str(args.get("pattern", "")), url=""
        )
    return response_function_web_search.ActionSearch(
        type="search", query=str(args.get("query", ""))
    )


def run_baseline(
    enc: HarmonyEncoding, tools: Sequence[dict[str, Any]], turns: Sequence[Any], sink: list[str]
) -> None:
    """A whole response: ``turns`` are token lists and (output, error) tuples."""
    server = MiniServer(enc, tools, sink)
    server.start()
    for turn in turns:
        if isinstance(turn, tuple):
            server.tool_output(*turn)
        else:
            server.feed_turn(turn)
    server.finish()
