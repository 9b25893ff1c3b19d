"""The vLLM plugin's switch, version guard and parser adapter, without vLLM.

The plugin against vLLM's real serving code is tested in ``tests_vllm/`` (its
own virtualenv with vllm==0.33.0). Here: what must hold in any environment.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai_harmony import HarmonyError as OpenAIHarmonyError
from openai_harmony import Role, StreamableParser

from harmony_stream import HarmonyParser, Vocab, vllm_plugin

LOGGER = "vllm.plugins.harmony_stream"


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in `vllm` module whose version the test sets."""
    module = types.ModuleType("vllm")
    monkeypatch.setitem(sys.modules, "vllm", module)
    yield module
    vllm_plugin.uninstall()


def test_entry_point_is_registered_for_vllm() -> None:
    eps = importlib.metadata.entry_points(group="vllm.general_plugins")
    ours = [ep for ep in eps if ep.name == "harmony_stream"]
    assert len(ours) == 1, [ep.value for ep in eps]
    assert ours[0].value == "harmony_stream.vllm_plugin:register"
    assert ours[0].load() is vllm_plugin.register


@pytest.mark.parametrize("value", [None, "", "0", "false", "off", "no"])
def test_switch_off_touches_nothing(
    value: str | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake_vllm: types.ModuleType,
) -> None:
    if value is None:
        monkeypatch.delenv(vllm_plugin.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(vllm_plugin.ENV_VAR, value)
    monkeypatch.setattr(fake_vllm, "__version__", "0.33.0", raising=False)  # would patch if on
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        vllm_plugin.register()
    assert not vllm_plugin.is_active()
    assert caplog.records == []


@pytest.mark.parametrize("version", ["0.32.1", "0.33.1", "0.34.0", "0.33.0rc1"])
@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_other_vllm_versions_are_refused_in_one_line(
    version: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake_vllm: types.ModuleType,
) -> None:
    monkeypatch.setattr(fake_vllm, "__version__", version, raising=False)
    monkeypatch.setenv(vllm_plugin.ENV_VAR, value)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        vllm_plugin.register()
    assert not vllm_plugin.is_active()
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.WARNING
    assert version in record.getMessage()
    assert "0.33.0" in record.getMessage()
    assert "not patching" in record.getMessage()


def test_force_on_an_untested_version_checks_the_seams_and_refuses_a_mismatch(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake_vllm: types.ModuleType,
) -> None:
    """A stand-in vLLM has none of the seams: force says the version is untested,
    then the seam check refuses in one line naming them, and nothing is patched."""
    monkeypatch.setattr(fake_vllm, "__version__", "0.34.0", raising=False)
    monkeypatch.setattr(vllm_plugin._TARGET, "untested_said", False)
    monkeypatch.setenv(vllm_plugin.ENV_VAR, "force")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert vllm_plugin.install() is False
    assert not vllm_plugin.is_active()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "vLLM 0.34.0 is untested" in messages[0]
    assert "not patching vLLM 0.34.0" in messages[1]
    seams = sum(seam.applies_to("0.34.0") for seam in vllm_plugin.SEAMS)
    assert f"{seams} seams are not as expected" in messages[1]
    assert "vllm.parser.harmony:HarmonyParser.process_chunk cannot be imported" in messages[1]


@pytest.mark.parametrize(
    ("params", "expected", "problem"),
    [
        (("self", "output"), ("self", "output"), None),
        (("self", "output", "extra"), ("self", "output"), "takes (self, output, extra)"),
        (("self", "outputs"), ("self", "output"), "takes (self, outputs)"),
        (("self", "a", "b"), ("self", "..."), None),
        (("a",), ("self", "..."), "the plugin was written for (self, ...)"),
        ((), (), None),
    ],
)
def test_signature_check(
    params: tuple[str, ...], expected: tuple[str, ...], problem: str | None
) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def f({', '.join(params)}): pass", namespace)
    found = vllm_plugin._signature_problem(namespace["f"], expected)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_without_vllm_install_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert vllm_plugin.install() is False
    assert not vllm_plugin.is_active()
    assert [r.getMessage() for r in caplog.records] == [
        "harmony-stream: vLLM is not installed; nothing to patch"
    ]


# ---------------------------------------------------------------------------
# The parser adapter against openai-harmony's StreamableParser (the oracle)

CLEAN = [
    "<|channel|>analysis<|message|>Let me think. 🎉 中文<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello, world!<|return|>",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    '{"city": "Zürich"}<|call|>',
    "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python"
    "<|channel|>analysis code<|message|>print(1+1)<|call|>",
    "<|channel|>commentary<|message|>Checking…<|end|><|start|>assistant"
    "<|channel|>commentary to=container.exec <|constrain|>json<|message|>"
    '{"cmd": ["ls"]}<|call|>',
    "<|channel|>final<|message|><|return|>",
    "<|channel|>final<|message|>cut mid-mess",
]


def _trace(parser: Any, tokens: list[int]) -> list[Any]:
    out: list[Any] = []
    for t in tokens:
        parser.process(t)
        out.append(
            (
                parser.current_channel,
                parser.current_recipient,
                parser.current_content_type,
                parser.last_content_delta,
                parser.current_content,
                parser.current_role,
                [m.to_dict() for m in parser.messages],
            )
        )
    parser.process_eos()
    out.append([m.to_dict() for m in parser.messages])
    return out


@pytest.mark.parametrize("text", CLEAN)
def test_adapter_matches_openai_harmony_token_by_token(text: str, vocab: Vocab, enc: Any) -> None:
    tokens = enc.encode(text, allowed_special="all")
    expected = _trace(StreamableParser(enc, role=Role.ASSISTANT), tokens)
    got = _trace(vllm_plugin.RustStreamableParser(vocab), tokens)
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(
    reasoning=st.text(max_size=40),
    answer=st.text(max_size=40),
)
def test_adapter_matches_openai_harmony_on_random_text(
    reasoning: str, answer: str, vocab: Vocab, enc: Any
) -> None:
    text = (
        f"<|channel|>analysis<|message|>{reasoning}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{answer}<|return|>"
    )
    tokens = enc.encode(text, allowed_special="all")
    expected = _trace(StreamableParser(enc, role=Role.ASSISTANT), tokens)
    assert _trace(vllm_plugin.RustStreamableParser(vocab), tokens) == expected


def test_adapter_raises_openai_harmony_error_and_goes_on(vocab: Vocab, enc: Any) -> None:
    """vLLM catches openai_harmony.HarmonyError per token and skips it."""
    parser = vllm_plugin.RustStreamableParser(vocab)
    tokens = enc.encode("<|channel|>final<|message|>Hi<|return|>", allowed_special="all")
    parser.process(tokens[0])
    with pytest.raises(OpenAIHarmonyError, match="token"):
        parser.process(10**9)
    for t in tokens[1:]:
        parser.process(t)
    assert [m.to_dict()["content"] for m in parser.messages] == [[{"type": "text", "text": "Hi"}]]


def test_adapter_messages_are_new_lists(vocab: Vocab, enc: Any) -> None:
    """vLLM reads `messages` every token; mutating the list must not reach the parser."""
    parser = vllm_plugin.RustStreamableParser(vocab)
    for t in enc.encode("<|channel|>final<|message|>Hi<|end|>", allowed_special="all"):
        parser.process(t)
    first = parser.messages
    first.clear()
    assert len(parser.messages) == 1


@pytest.mark.parametrize(
    "text",
    [
        *CLEAN,
        "<|channel|>final<|message|>a<|end|><|end|><|return|>stray<|start|><|start|>assistant"
        "<|channel|>commentary?<|message|>b<|call|><|start|>assistant<|channel|>fin",
    ],
)
def test_message_count_is_len_messages_after_every_token(text: str, vocab: Vocab, enc: Any) -> None:
    """The plugin's process_chunk polls `message_count` instead of `messages`."""
    parser = HarmonyParser(vocab)
    for t in enc.encode(text, allowed_special="all"):
        parser.process(t)
        assert parser.message_count == len(parser.messages)
    parser.process_eos()
    assert parser.message_count == len(parser.messages)


def test_switch_on_outside_the_api_server_waits_for_a_serving_import(
    monkeypatch: pytest.MonkeyPatch, fake_vllm: types.ModuleType
) -> None:
    """Engine cores and workers load general plugins too: with no serving module
    imported, `register` only adds an import hook (once), and patches nothing."""
    monkeypatch.setattr(fake_vllm, "__version__", "0.33.0", raising=False)
    monkeypatch.setenv(vllm_plugin.ENV_VAR, "1")
    for name in vllm_plugin._SERVING_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    vllm_plugin.register()
    vllm_plugin.register()
    hooks = [f for f in sys.meta_path if isinstance(f, vllm_plugin._InstallOnImport)]
    assert len(hooks) == 1
    assert sys.meta_path[0] is hooks[0]
    assert not vllm_plugin.is_active()
    assert hooks[0].find_spec("json", None) is None  # other imports pass through


# ---------------------------------------------------------------------------
# A request whose tools carry NaN (vLLM reads request bodies with json.loads,
# which takes NaN): the plugin's engine still serves it, and writes the NaN as
# null, as vLLM's own pydantic serialization of the same tools does.


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def test_tools_with_nan_are_served_by_the_engine_as_null(
    vocab: Vocab, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import math

    from openai.types.responses import FunctionTool

    monkeypatch.setattr(vllm_plugin, "_vocab", vocab)  # no vLLM encoding needed
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"x": {"type": "number", "default": math.nan}},
        "examples": [math.inf, -math.inf, 1.5, {"y": [math.nan]}],
    }
    tool = FunctionTool(type="function", name="f", parameters=schema)
    request = types.SimpleNamespace(
        tools=[tool], model="gpt-oss", request_id="resp_nan", max_output_tokens=None
    )
    engine = vllm_plugin._attach_engine(types.SimpleNamespace(), request, "gpt-oss")
    assert engine is not None, "the request fell back to vLLM's own event path"
    final_answer = [200005, 17196, 200008, 290, 200002]  # <|channel|>final<|message|> the<|return|>
    engine.feed(final_answer)
    events = engine.drain() + engine.finish("stop")
    texts = [e.model_dump_json() for e in events] + [engine.stream.response_json()]
    docs = [json.loads(t, parse_constant=_no_constant) for t in texts]
    assert any(d.get("type") == "response.output_text.done" for d in docs)
    # The oracle: the tool as vLLM's pydantic models serialize it in response.created.
    expected = json.loads(tool.model_dump_json(exclude_none=True))
    assert docs[-1]["tools"] == [expected]
    assert expected["parameters"]["properties"]["x"]["default"] is None
