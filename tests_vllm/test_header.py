"""Visible from outside the process: ``x-harmony-stream: VERSION`` while the plugin is active.

Through the harness's app (vLLM's real routers, attached with their own
``attach_router``) and through vLLM's own ``build_app`` (the app ``vllm serve``
runs, its routers imported the way vLLM imports them, the plugin loaded by
``load_general_plugins()``), with the plugin on and off. The expected version is
the installed package's; the paths that carry the header are the issue's
(``/v1/responses`` and ``/v1/chat/completions``), and ``/v1/models`` does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import corpus
import harness
import httpx
import pytest

from harmony_stream import __version__, vllm_plugin

ENTRY = corpus.CLEAN[0]
HERE = Path(__file__).resolve().parent


def request(app: harness.App, path: str, body: dict[str, Any] | None) -> httpx.Response:
    """One request to `app` (POST with `body`, else GET), the model playing ENTRY."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://vllm.test") as client:
            if body is None:
                return await client.get(path)
            return await client.post(path, json=body)

    app.engine.script = harness.Script(turns=list(ENTRY.turns), step=1)
    try:
        return harness.run(send())  # type: ignore[no-any-return]
    finally:
        app.engine.script = None


def bodies(stream: bool) -> dict[str, dict[str, Any]]:
    return {
        "/v1/responses": {"model": harness.MODEL, "input": ENTRY.prompt, "stream": stream},
        "/v1/chat/completions": {
            "model": harness.MODEL,
            "messages": [{"role": "user", "content": ENTRY.prompt}],
            "stream": stream,
        },
    }


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("path", ["/v1/responses", "/v1/chat/completions"])
@pytest.mark.parametrize("on", [True, False])
def test_the_header_says_whether_the_plugin_is_active(on: bool, path: str, stream: bool) -> None:
    with harness.plugin(on):
        app = harness.get_app()
        response = request(app, path, bodies(stream)[path])
        models = request(app, "/v1/models", None)
    assert response.status_code == 200, response.text[:500]
    assert response.headers.get(vllm_plugin.HEADER) == (__version__ if on else None)
    assert models.status_code == 200
    assert vllm_plugin.HEADER not in models.headers


def test_an_app_built_while_on_stops_saying_it_once_unpatched() -> None:
    """The header tells the plugin's state now, not when the app was built."""
    with harness.plugin(True):
        app = harness.get_app()
        path, body = next(iter(bodies(False).items()))
        assert request(app, path, body).headers.get(vllm_plugin.HEADER) == __version__
    assert not vllm_plugin.is_active()
    response = request(app, path, body)
    assert response.status_code == 200
    assert vllm_plugin.HEADER not in response.headers


# vLLM's own app factory, in a fresh interpreter: plugins loaded first (as vLLM
# does), then `build_app`, which imports the routers itself. The serving objects
# it would get from a running engine come from the harness's scripted one.
PROBE = r"""
import asyncio, json, sys
import httpx
from vllm.plugins import load_general_plugins
load_general_plugins()
try:
    from vllm.entrypoints.common.cli_args import FrontendArgs
except ImportError:  # vLLM 0.32
    from vllm.entrypoints.launchers.cli_args import FrontendArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.app import build_app
from harmony_stream import vllm_plugin
args = FrontendArgs.add_cli_args(FlexibleArgumentParser()).parse_args([])
app = build_app(args, ("generate",))
sys.path.insert(0, HERE)
import harness
from test_header import ENTRY, bodies
scripted = harness.build_app(None)
for name in ("openai_serving_models", "openai_serving_responses", "openai_serving_chat",
             "online_renderer"):
    setattr(app.state, name, getattr(scripted.app.state, name))
app.state.args.sse_keep_alive_interval = 0

async def main():
    out = {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://vllm.test") as client:
        for stream in (True, False):
            for path, body in bodies(stream).items():
                scripted.engine.script = harness.Script(turns=list(ENTRY.turns), step=1)
                r = await client.post(path, json=body)
                out[f"{path} stream={stream}"] = [r.status_code, r.headers.get(HEADER)]
        r = await client.get("/v1/models")
        out["/v1/models"] = [r.status_code, r.headers.get(HEADER)]
    return out

print(json.dumps({"active": vllm_plugin.is_active(), "headers": asyncio.run(main())}))
"""


@pytest.mark.parametrize("switch", ["1", None])
def test_vllms_own_build_app(switch: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != vllm_plugin.ENV_VAR}
    if switch is not None:
        env[vllm_plugin.ENV_VAR] = switch
    code = PROBE.replace("HERE", repr(str(HERE))).replace("HEADER", repr(vllm_plugin.HEADER))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    on = switch is not None
    assert result["active"] is on
    expected = __version__ if on else None
    for where, (status, header) in result["headers"].items():
        assert status == 200, where
        assert header == (None if where == "/v1/models" else expected), where
