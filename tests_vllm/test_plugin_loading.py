"""The plugin as vLLM loads it: the entry point, the switch, and "off means untouched"."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import vllm

# vLLM 0.31 and 0.32 end an incomplete stream with `response.completed`: the plugin
# fixes its terminal event and its background replay's end.
_TERMINAL_EVENT_SEAMS = (
    (
        "vllm.entrypoints.openai.responses.serving",
        "OpenAIServingResponses",
        "responses_stream_generator",
    ),
    (
        "vllm.entrypoints.openai.responses.serving",
        "OpenAIServingResponses",
        "responses_background_stream_generator",
    ),
)
VERSION_SEAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "0.31.0": _TERMINAL_EVENT_SEAMS,
    "0.32.0": _TERMINAL_EVENT_SEAMS,
}

# Every function the plugin replaces (its patch table, harmony_stream/vllm_plugin.py,
# `_patch_table`): (module, class or "" for a module attribute, name). The "on" tests also
# check that the plugin's own table is exactly this, so a new patch must be added here.
SEAMS = (
    *VERSION_SEAMS.get(vllm.__version__, ()),
    ("vllm.parser.harmony", "", "get_streamable_parser_for_assistant"),
    ("vllm.parser.harmony", "HarmonyParser", "process_chunk"),
    ("vllm.entrypoints.openai.responses.context", "HarmonyContext", "append_output"),
    ("vllm.entrypoints.openai.responses.context", "HarmonyContext", "append_tool_output"),
    ("vllm.entrypoints.openai.responses.context", "HarmonyContext", "need_builtin_tool_call"),
    ("vllm.entrypoints.openai.responses.context", "HarmonyContext", "call_tool"),
    ("vllm.entrypoints.openai.responses.context", "HarmonyContext", "init_tool_sessions"),
    (
        "vllm.entrypoints.openai.responses.serving",
        "OpenAIServingResponses",
        "_process_harmony_streaming_events",
    ),
    ("vllm.entrypoints.openai.responses.serving", "", "harmony_to_response_output"),
    (
        "vllm.entrypoints.openai.responses.serving",
        "OpenAIServingResponses",
        "responses_full_generator",
    ),
    ("vllm.entrypoints.openai.responses.api_router", "", "attach_router"),
    ("vllm.entrypoints.openai.chat_completion.api_router", "", "attach_router"),
)


def seam_value(module: str, owner: str, name: str) -> Any:
    """What vLLM currently has at that place (a class's own attribute, not an inherited one)."""
    obj = importlib.import_module(module)
    return getattr(obj, owner).__dict__[name] if owner else getattr(obj, name)


def patch_table() -> list[str]:
    """The places the plugin has patched in this process, as `module:owner.name`."""
    from harmony_stream import vllm_plugin

    out = []
    for owner, name, _ in vllm_plugin._patches:
        if isinstance(owner, type):
            out.append(f"{owner.__module__}:{owner.__name__}.{name}")
        else:
            out.append(f"{owner.__name__}:.{name}")
    return sorted(out)


EXPECTED_TABLE = sorted(f"{m}:{o}.{n}" for m, o, n in SEAMS)

# Run in a fresh interpreter; "own" means each seam is still vLLM's own function.
PROBE = r"""
import json
import sys
from vllm.plugins import load_general_plugins
load_general_plugins()
from harmony_stream import vllm_plugin
# What a process that never serves the API (an engine core, a GPU worker) sees.
before_serving = {
    "active": vllm_plugin.is_active(),
    "openai_layer_imported": any(
        m.startswith("vllm.entrypoints.openai.responses") for m in sys.modules
    ),
}
TRIGGER
sys.path.insert(0, HERE)
from test_plugin_loading import SEAMS, patch_table, seam_value
own = {
    f"{m}:{o}.{n}": not seam_value(m, o, n).__module__.startswith("harmony_stream")
    for m, o, n in SEAMS
}
print(json.dumps({
    "active": vllm_plugin.is_active(),
    "own": own,
    "table": patch_table(),
    "before": before_serving,
}))
"""

TRIGGERS = {
    "responses": "import vllm.entrypoints.openai.responses.serving",
    "chat": "import vllm.entrypoints.openai.chat_completion.serving",
}


def probe(switch: str | None, trigger: str = "responses") -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "HARMONY_STREAM_VLLM"}
    if switch is not None:
        env["HARMONY_STREAM_VLLM"] = switch
    here = repr(os.path.dirname(os.path.abspath(__file__)))
    code = PROBE.replace("TRIGGER", TRIGGERS[trigger]).replace("HERE", here)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("switch", [None, "0"])
def test_off_leaves_vllm_untouched(switch: str | None) -> None:
    result = probe(switch)
    assert result["active"] is False
    assert result["table"] == []
    assert len(result["own"]) == len(SEAMS)  # type: ignore[arg-type]
    assert result["own"] == dict.fromkeys(result["own"], True)  # type: ignore[arg-type]


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_on_patches_every_seam_once_the_api_is_served(trigger: str) -> None:
    """vLLM loads general plugins in engine cores and workers too: there the
    plugin imports nothing of vLLM's OpenAI layer and patches nothing; the first
    import of a serving module (responses or chat) patches every seam."""
    result = probe("1", trigger)
    assert result["before"] == {"active": False, "openai_layer_imported": False}
    assert result["active"] is True
    assert result["table"] == EXPECTED_TABLE  # the plugin patches these and nothing else
    assert len(result["own"]) == len(SEAMS)  # type: ignore[arg-type]
    assert result["own"] == dict.fromkeys(result["own"], False)  # type: ignore[arg-type]


def test_uninstall_restores_vllm_in_process() -> None:
    from harmony_stream import vllm_plugin

    before = [seam_value(*seam) for seam in SEAMS]
    assert vllm_plugin.install() is True
    assert vllm_plugin.install() is True  # idempotent
    try:
        assert patch_table() == EXPECTED_TABLE
        during = [seam_value(*seam) for seam in SEAMS]
        changed = [
            f"{o}.{n}" for (_, o, n), x, y in zip(SEAMS, before, during, strict=True) if x is not y
        ]
        assert len(changed) == len(SEAMS), changed
    finally:
        vllm_plugin.uninstall()
    after = [seam_value(*seam) for seam in SEAMS]
    assert all(x is y for x, y in zip(after, before, strict=True))
    assert patch_table() == []


def test_on_in_a_process_already_serving_patches_at_once() -> None:
    """`vllm serve`'s API server has imported its routers before it loads plugins."""
    code = (
        "import vllm.entrypoints.openai.responses.serving\n"
        "from vllm.plugins import load_general_plugins\n"
        "load_general_plugins()\n"
        "import sys\n"
        "from harmony_stream import vllm_plugin\n"
        "print(vllm_plugin.is_active(), any(type(f).__name__ == '_InstallOnImport'"
        " for f in sys.meta_path))\n"
    )
    env = dict(os.environ, HARMONY_STREAM_VLLM="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "True False"
