"""The seam check and the all-or-none install, against this virtualenv's real vLLM.

Each test changes one real vLLM seam for its duration (pytest's monkeypatch
restores it) and checks that the plugin then refuses with one log line naming
that seam and leaves every seam as vLLM had it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from test_plugin_loading import SEAMS as PATCHED
from test_plugin_loading import seam_value

from harmony_stream import vllm_plugin

LOGGER = "vllm.plugins.harmony_stream"
CONTEXT = "vllm.entrypoints.openai.responses.context"


@pytest.fixture(autouse=True)
def _not_installed() -> Iterator[None]:
    vllm_plugin.uninstall()
    yield
    vllm_plugin.uninstall()


def vllm_values() -> list[Any]:
    """What vLLM has at each patched place (None where a test removed it)."""
    values = []
    for module, owner, name in PATCHED:
        try:
            values.append(seam_value(module, owner, name))
        except (KeyError, AttributeError):
            values.append(None)
    return values


def context_class() -> Any:
    return importlib.import_module(CONTEXT).HarmonyContext


def refused_in_one_line(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    before = vllm_values()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert vllm_plugin.install() is False
    assert not vllm_plugin.is_active()
    assert vllm_plugin._patches == []
    assert all(x is y for x, y in zip(vllm_values(), before, strict=True))
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert records[0].levelno == logging.WARNING
    assert "not patching" in message
    for word in words:
        assert word in message, message


def test_every_seam_is_there_in_this_vllm() -> None:
    assert vllm_plugin.check_seams() == []


def test_the_seam_table_lists_every_patched_place() -> None:
    """The loading tests' list of patched places is the table's patched rows."""
    import vllm

    patched = {
        (s.module, s.owner, s.name)
        for s in vllm_plugin.SEAMS
        if s.patched and s.applies_to(vllm.__version__)
    }
    assert patched == set(PATCHED)


def test_a_removed_method_is_refused_and_nothing_is_patched(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(context_class(), "call_tool")
    refused_in_one_line(caplog, "HarmonyContext.call_tool is missing")


def test_a_changed_signature_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def append_output(self: Any, outputs: Any, extra: Any) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(context_class(), "append_output", append_output)
    refused_in_one_line(caplog, "HarmonyContext.append_output takes (self, outputs, extra)")


def test_a_removed_read_only_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    parser = importlib.import_module("vllm.parser.harmony")
    monkeypatch.delattr(parser, "Segment")
    refused_in_one_line(caplog, "vllm.parser.harmony:Segment is missing")


def test_an_instance_attribute_vllm_no_longer_sets_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from harmony_stream import _plugin

    monkeypatch.setattr(
        _plugin, "sets_attribute", lambda cls, name, package: name != "_tool_sessions"
    )
    refused_in_one_line(caplog, "HarmonyContext._tool_sessions is never set")


def test_a_patch_that_fails_midway_undoes_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_table = vllm_plugin._patch_table

    def failing_table(version: str) -> list[tuple[Any, str, Any]]:
        # int's attributes cannot be set: the last patch raises TypeError.
        return [*real_table(version), (int, "real", None)]

    monkeypatch.setattr(vllm_plugin, "_patch_table", failing_table)
    refused_in_one_line(caplog, "a patch failed")


def test_force_patches_an_untested_version_whose_seams_match(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.99.0")
    monkeypatch.setattr(vllm_plugin._TARGET, "untested_said", False)
    monkeypatch.setenv(vllm_plugin.ENV_VAR, "1")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert vllm_plugin.install() is False
    assert "tested on vllm" in caplog.records[-1].getMessage()
    caplog.clear()
    monkeypatch.setenv(vllm_plugin.ENV_VAR, "force")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert vllm_plugin.install() is True
    assert vllm_plugin.is_active()
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "0.99.0 is untested" in messages[0], messages
    assert "active in vLLM 0.99.0" in messages[-1], messages


def test_force_still_refuses_when_a_seam_does_not_match(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.99.0")
    monkeypatch.setattr(vllm_plugin._TARGET, "untested_said", True)  # that line is tested above
    monkeypatch.setenv(vllm_plugin.ENV_VAR, "force")
    monkeypatch.delattr(context_class(), "need_builtin_tool_call")
    refused_in_one_line(caplog, "need_builtin_tool_call is missing", "0.99.0")
