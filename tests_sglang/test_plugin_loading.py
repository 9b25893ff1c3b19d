"""How the SGLang plugin switches on, refuses, and shows it is on.

* SGLang's own ``load_plugins()`` finds it through the ``sglang.srt.plugins``
  entry point (this checkout's wheel is installed in SGLang's virtualenv), and
  honours the ``SGLANG_PLUGINS`` allow-list;
* off unless ``HARMONY_STREAM_SGLANG`` is on; patching waits for SGLang's
  Responses serving module, so a process that never serves the API (the
  scheduler, the detokenizer) is never patched and never imports it for us;
* every seam is checked first: a missing or changed one, another SGLang
  release, or a patch that fails, and nothing is patched (one log line);
* active, ``/v1/responses`` answers with ``x-harmony-stream: VERSION``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harmony_stream import __version__, sglang_plugin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVING = "sglang.srt.entrypoints.openai.serving_responses"
CONTEXT = "sglang.srt.entrypoints.context"


def sglang_functions() -> dict[str, Any]:
    """What SGLang holds at every patched seam (to see that nothing changed)."""
    out: dict[str, Any] = {}
    for seam in sglang_plugin.SEAMS:
        if not seam.patched:
            continue
        owner: Any = importlib.import_module(seam.module)
        if seam.owner:
            owner = getattr(owner, seam.owner)
        out[str(seam)] = (
            owner.__dict__.get(seam.name)
            if isinstance(owner, type)
            else getattr(owner, seam.name, None)
        )
    return out


def refused_in_one_line(caplog: pytest.LogCaptureFixture, *fragments: str) -> None:
    before = sglang_functions()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sglang.srt.plugins.harmony_stream"):
        assert sglang_plugin.install() is False
    assert not sglang_plugin.is_active()
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("harmony_stream")]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert sglang_functions() == before


def test_every_seam_is_as_expected_on_this_release() -> None:
    assert sglang_plugin.check_seams() == []


def test_install_and_uninstall_patch_and_restore_every_seam() -> None:
    before = sglang_functions()
    assert sglang_plugin.install() is True
    try:
        assert sglang_plugin.is_active()
        after = sglang_functions()
        assert all(after[k] is not before[k] for k in before)
        assert sglang_plugin.install() is True  # idempotent
    finally:
        sglang_plugin.uninstall()
    assert not sglang_plugin.is_active()
    assert sglang_functions() == before


def test_a_removed_patched_method_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    context = importlib.import_module(CONTEXT)
    monkeypatch.delattr(context.StreamingHarmonyContext, "render_for_completion")
    refused_in_one_line(caplog, "StreamingHarmonyContext.render_for_completion is missing")


def test_a_changed_signature_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serving = importlib.import_module(SERVING)

    async def responses_stream_generator(self: Any, request: Any, context: Any) -> Any:
        yield ""

    monkeypatch.setattr(
        serving.OpenAIServingResponses, "responses_stream_generator", responses_stream_generator
    )
    refused_in_one_line(caplog, "responses_stream_generator takes (self, request, context)")


def test_a_removed_read_only_name_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serving = importlib.import_module(SERVING)
    monkeypatch.delattr(serving, "_RESPONSE_OUTPUT")
    refused_in_one_line(caplog, "_RESPONSE_OUTPUT is missing")


def test_an_instance_attribute_sglang_no_longer_sets_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from harmony_stream import _plugin

    real = _plugin.sets_attribute
    monkeypatch.setattr(
        _plugin,
        "sets_attribute",
        lambda cls, name, package: name != "num_init_messages" and real(cls, name, package),
    )
    refused_in_one_line(caplog, "HarmonyContext.num_init_messages is never set by sglang's code")


def test_a_patch_that_fails_midway_undoes_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_table = sglang_plugin._patch_table

    def failing_table() -> list[tuple[Any, str, Any]]:
        # int's attributes cannot be set: the last patch raises TypeError.
        return [*real_table(), (int, "real", None)]

    monkeypatch.setattr(sglang_plugin, "_patch_table", failing_table)
    refused_in_one_line(caplog, "a patch failed")


def test_another_release_is_refused_unless_forced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sglang

    monkeypatch.setattr(sglang, "__version__", "0.5.22")
    refused_in_one_line(caplog, "not patching SGLang 0.5.22", "tested on sglang 0.5.23 only")
    monkeypatch.setenv(sglang_plugin.ENV_VAR, "force")
    monkeypatch.setattr(sglang_plugin._TARGET, "untested_said", False)
    with caplog.at_level(logging.WARNING, logger="sglang.srt.plugins.harmony_stream"):
        assert sglang_plugin.install() is True
    try:
        assert any("0.5.22 is untested" in r.getMessage() for r in caplog.records)
    finally:
        sglang_plugin.uninstall()


def test_register_does_nothing_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sglang_plugin.ENV_VAR, raising=False)
    hooks = len(sys.meta_path)
    sglang_plugin.register()
    assert len(sys.meta_path) == hooks
    assert not sglang_plugin.is_active()


def _python(code: str, **env: str) -> list[str]:
    """Runs `code` in a fresh SGLang process (this virtualenv) and returns its
    stdout lines."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("SGLANG_PLUGINS",)}
    full_env.pop(sglang_plugin.ENV_VAR, None)
    full_env.update(env)
    full_env.setdefault("TIKTOKEN_ENCODINGS_BASE", str(ROOT / ".cache" / "tiktoken"))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=HERE,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()


_LOAD = """
import sys
from sglang.srt.plugins import load_plugins
from harmony_stream import sglang_plugin
load_plugins()
print("imported", "sglang.srt.entrypoints.openai.serving_responses" in sys.modules)
print("active", sglang_plugin.is_active())
import sglang.srt.entrypoints.openai.serving_responses
print("active", sglang_plugin.is_active())
"""


def test_sglangs_load_plugins_finds_it_and_it_waits_for_the_serving_module() -> None:
    """Through the entry point, as SGLang's server, scheduler and detokenizer
    load plugins: nothing patched (nor imported) until the serving module is."""
    assert _python(_LOAD, HARMONY_STREAM_SGLANG="1") == [
        "imported False",
        "active False",
        "active True",
    ]


def test_the_allow_list_and_the_switch_are_honoured() -> None:
    on = {"HARMONY_STREAM_SGLANG": "1"}
    assert _python(_LOAD, **on, SGLANG_PLUGINS="harmony_stream")[-1] == "active True"
    assert _python(_LOAD, **on, SGLANG_PLUGINS="some_other_plugin")[-1] == "active False"
    assert _python(_LOAD)[-1] == "active False"


_HEADER = """
import sys
sys.path[:0] = [{here!r}, {tests_vllm!r}, {tests!r}]
import corpus
import harness
from sglang.srt.plugins import load_plugins
load_plugins()
for stream in (True, False):
    r = harness.responses(corpus.BY_NAME["reasoning_final"], stream=stream)
    print(r.status_code, r.headers.get("x-harmony-stream"))
"""


@pytest.mark.parametrize("switch", ["1", ""])
def test_the_header_shows_it_is_on(switch: str) -> None:
    """`curl -i` a request: the header names the package's version while active."""
    code = _HEADER.format(
        here=str(HERE), tests_vllm=str(ROOT / "tests_vllm"), tests=str(ROOT / "tests")
    )
    expected = __version__ if switch else None
    assert _python(code, HARMONY_STREAM_SGLANG=switch) == [f"200 {expected}"] * 2


def test_the_plugin_module_imports_nothing_of_sglang() -> None:
    """Cheap in every SGLang process: importing the plugin imports no SGLang module."""
    lines = _python(
        """
        import sys
        import harmony_stream.sglang_plugin
        print(sorted(m for m in sys.modules if m == "sglang" or m.startswith("sglang.")))
        """
    )
    assert lines == ["[]"]


def test_the_docstring_names_every_patched_seam() -> None:
    doc = inspect.getdoc(sglang_plugin) or ""
    for seam in sglang_plugin.SEAMS:
        if seam.patched:
            assert seam.name in doc, seam
