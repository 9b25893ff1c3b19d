"""The client side the two server suites' harnesses share (tests_vllm/harness.py,
tests_sglang/harness.py): an in-process POST to the server's ASGI app over httpx,
an ASGI wrapper that records an exception escaping the app, the SSE parser and
the reading of a response into what the suites' ``Result`` holds, and
``normalize`` for comparing responses.

Each harness puts this directory on ``sys.path`` (appended) before importing it;
the suites run in the servers' virtualenvs, which have httpx (imported when a
request is made, so this module imports with the standard library alone).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
ID_KEYS = frozenset({"id", "item_id", "call_id", "response_id", "container_id"})
REQUEST_TIMEOUT_S = 60


def parse_sse(body: bytes) -> tuple[list[str | None], list[dict[str, Any]], bool]:
    """SSE blocks → (`event:` names, data objects, whether `data: [DONE]` came)."""
    names: list[str | None] = []
    events: list[dict[str, Any]] = []
    done = False
    for block in body.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif line.startswith(":"):
                continue  # SSE comment (keep-alive)
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        payload = "\n".join(data)
        if payload == "[DONE]":
            done = True
            continue
        names.append(name)
        events.append(json.loads(payload))
    return names, events, done


class CatchAppErrors:
    """ASGI wrapper recording an exception that escapes the server's app (e.g.
    mid-stream) in `errors`; `on_send`, if given, sees each message the app sends
    before the server does."""

    def __init__(
        self,
        app: Any,
        errors: list[str],
        on_send: Callable[[Any], None] | None = None,
    ) -> None:
        self.app, self.errors, self.on_send = app, errors, on_send

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        on_send = self.on_send
        if on_send is not None:
            server_send: Callable[[Any], Awaitable[None]] = send

            async def recording_send(message: Any) -> None:
                on_send(message)
                await server_send(message)

            send = recording_send
        try:
            await self.app(scope, receive, send)
        except Exception as e:
            self.errors.append("".join(traceback.format_exception_only(type(e), e)).strip())
            raise


async def post(
    app: Any, path: str, body: dict[str, Any], *, base_url: str, timeout: float = REQUEST_TIMEOUT_S
) -> Any:
    """POST `body` as JSON to the in-process ASGI `app`; the httpx response, its
    whole body read."""
    httpx = importlib.import_module("httpx")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        # httpx's timeout does not reach an in-process app: a response that never
        # ends fails the test after `timeout` seconds instead of hanging the suite.
        return await asyncio.wait_for(client.post(path, json=body), timeout)


def read_response(
    response: Any, stream: bool
) -> tuple[list[str | None], list[dict[str, Any]], bool, Any]:
    """An httpx response → (SSE `event:` names, SSE data objects, whether
    `data: [DONE]` came, the JSON body or None): the SSE parts for a streamed
    request answered with an event stream, else the body as JSON if it is."""
    content_type = response.headers.get("content-type", "")
    names: list[str | None] = []
    events: list[dict[str, Any]] = []
    done = False
    parsed_json = None
    if stream and content_type.startswith("text/event-stream"):
        names, events, done = parse_sse(response.content)
    elif response.content:
        try:
            parsed_json = response.json()
        except ValueError:
            parsed_json = None
    return names, events, done, parsed_json


def final_response(
    stream: bool, body_json: dict[str, Any] | None, events: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Responses: the terminal event's response (stream) or the body."""
    if not stream:
        return body_json
    for ev in reversed(events):
        if ev.get("type") in TERMINAL:
            return ev["response"]  # type: ignore[no-any-return]
    return None


def normalize(obj: Any) -> Any:
    """Random ids replaced by placeholders in order of first appearance (so which
    ids are equal is kept), timestamps zeroed."""
    seen: dict[str, str] = {}

    def walk(o: Any, key: str | None = None) -> Any:
        if isinstance(o, dict):
            return {k: walk(v, k) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        if key in ID_KEYS and isinstance(o, str):
            return seen.setdefault(o, f"<id{len(seen)}>")
        if key in ("created_at", "created"):
            return 0
        return o

    return walk(obj)
