"""The plugin as vLLM loads it: the entry point, the switch, and "off means untouched"."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# What the plugin replaces; "untouched" means each is vLLM's own function.
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
from vllm.entrypoints.openai.parser import harmony_utils
from vllm.entrypoints.openai.responses import context, harmony, serving
from vllm.parser import harmony as parser
S, C = serving.OpenAIServingResponses, context.HarmonyContext
own = {
    "parser": parser.get_streamable_parser_for_assistant
    is harmony_utils.get_streamable_parser_for_assistant,
    "final_builder": serving.harmony_to_response_output is harmony.harmony_to_response_output,
    "stream_events": S._process_harmony_streaming_events.__module__ == serving.__name__,
    "full_generator": S.responses_full_generator.__module__ == serving.__name__,
    "append_output": C.append_output.__module__ == context.__name__,
    "append_tool_output": C.append_tool_output.__module__ == context.__name__,
    "init_tool_sessions": C.init_tool_sessions.__module__ == context.__name__,
}
print(json.dumps({"active": vllm_plugin.is_active(), "own": own, "before": before_serving}))
"""

TRIGGERS = {
    "responses": "import vllm.entrypoints.openai.responses.serving",
    "chat": "import vllm.entrypoints.openai.chat_completion.serving",
}


def probe(switch: str | None, trigger: str = "responses") -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "HARMONY_STREAM_VLLM"}
    if switch is not None:
        env["HARMONY_STREAM_VLLM"] = switch
    code = PROBE.replace("TRIGGER", TRIGGERS[trigger])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("switch", [None, "0"])
def test_off_leaves_vllm_untouched(switch: str | None) -> None:
    result = probe(switch)
    assert result["active"] is False
    assert result["own"] == dict.fromkeys(result["own"], True)  # type: ignore[arg-type]


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_on_patches_every_seam_once_the_api_is_served(trigger: str) -> None:
    """vLLM loads general plugins in engine cores and workers too: there the
    plugin imports nothing of vLLM's OpenAI layer and patches nothing; the first
    import of a serving module (responses or chat) patches every seam."""
    result = probe("1", trigger)
    assert result["before"] == {"active": False, "openai_layer_imported": False}
    assert result["active"] is True
    assert result["own"] == dict.fromkeys(result["own"], False)  # type: ignore[arg-type]


def test_uninstall_restores_vllm_in_process() -> None:
    from vllm.entrypoints.openai.parser import harmony_utils
    from vllm.entrypoints.openai.responses import context, serving
    from vllm.parser import harmony as parser

    from harmony_stream import vllm_plugin

    before = (
        serving.OpenAIServingResponses.__dict__["_process_harmony_streaming_events"],
        serving.OpenAIServingResponses.__dict__["responses_full_generator"],
        context.HarmonyContext.__dict__["append_output"],
        serving.harmony_to_response_output,
    )
    assert vllm_plugin.install() is True
    assert vllm_plugin.install() is True  # idempotent
    try:
        assert parser.get_streamable_parser_for_assistant is not (
            harmony_utils.get_streamable_parser_for_assistant
        )
    finally:
        vllm_plugin.uninstall()
    after = (
        serving.OpenAIServingResponses.__dict__["_process_harmony_streaming_events"],
        serving.OpenAIServingResponses.__dict__["responses_full_generator"],
        context.HarmonyContext.__dict__["append_output"],
        serving.harmony_to_response_output,
    )
    assert after == before
    assert parser.get_streamable_parser_for_assistant is (
        harmony_utils.get_streamable_parser_for_assistant
    )


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
