"""What the server plugins (vLLM, SGLang) have in common.

Each plugin keeps only its server's seams and patches. This module holds the
parts that do not depend on the server:

* :class:`Seam` and :func:`check_seams`: the table of places a plugin relies
  on, checked before anything is patched;
* :class:`Patches`: patches applied all or none, and undone;
* :class:`InstallOnImport`: install once the process imports the server's
  OpenAI serving layer (engine cores, schedulers and workers never do);
* :class:`Engine`: one request's :class:`ResponseStream`, fed from the
  server's token outputs and tool results, with the events not yet handed out,
  the completed messages as ``openai_harmony.Message`` and the final items;
* :func:`engine_tools`, :class:`SessionProxy`, :func:`tool_error_message`,
  :func:`tool_text`: request tools in, tool results in;
* :class:`HeaderMiddleware`: the ``x-harmony-stream`` response header.
"""

from __future__ import annotations

import importlib
import importlib.abc
import inspect
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from ._native import FINISH_REASONS, TOOL_TYPES, ResponseEvent, ResponseStream
from ._types import FinishReason
from .errors import HarmonyStreamError, InvalidTokenError

TRUE = frozenset({"1", "true", "yes", "on"})
FORCE = "force"
HEADER = "x-harmony-stream"
"""The response header on the patched endpoints while a plugin is active."""

ENVELOPE = frozenset({"response.created", "response.in_progress"})
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Tool types the engine takes; servers accept more (file_search, container ...),
# which have no item of their own here and are left out of the engine's tools.
ENGINE_TOOL_TYPES = frozenset(TOOL_TYPES)


def switch(env_var: str) -> str | None:
    """``"on"``, ``"force"`` (any release whose seams match) or None (off)."""
    value = os.environ.get(env_var, "").strip().lower()
    if value == FORCE:
        return FORCE
    return "on" if value in TRUE else None


# ---------------------------------------------------------------------------
# Seams


@dataclass(frozen=True)
class Seam:
    """One place of the server the plugin relies on.

    ``params`` are the positional parameters the adapter was written for; a
    trailing ``"..."`` means "these first, then anything" (the adapter passes
    the rest on as the server gave it). ``instance`` marks an attribute that the
    server's own code sets on its instances (``self.name``), not one of the
    class. ``versions``: the releases the seam is for (None: every release).
    """

    module: str
    owner: str
    name: str
    patched: bool = False
    params: tuple[str, ...] | None = None
    instance: bool = False
    versions: tuple[str, ...] | None = None

    def applies_to(self, version: str) -> bool:
        """Whether the plugin relies on this seam in release `version`."""
        return self.versions is None or version in self.versions

    def __str__(self) -> str:
        where = f"{self.owner}.{self.name}" if self.owner else self.name
        return f"{self.module}:{where}"


def check_seams(version: str, seams: Iterable[Seam], package: str) -> list[str]:
    """What is not as the plugin expects in release `version` of `package`:
    one line per seam."""
    problems: list[str] = []
    for seam in seams:
        if not seam.applies_to(version):
            continue
        problem = seam_problem(seam, package)
        if problem is not None:
            problems.append(f"{seam} {problem}")
    return problems


def seam_problem(seam: Seam, package: str) -> str | None:
    try:
        owner: Any = importlib.import_module(seam.module)
    except Exception as e:  # any import failure means the seam is not there
        return f"cannot be imported ({type(e).__name__}: {e})"
    if seam.owner:
        owner = getattr(owner, seam.owner, None)
        if not isinstance(owner, type):
            return f"is missing ({seam.owner} is not a class of {seam.module})"
    if seam.instance:
        if sets_attribute(owner, seam.name, package):
            return None
        return f"is never set by {package}'s code"
    if seam.patched and isinstance(owner, type):
        value = owner.__dict__.get(seam.name)
    else:
        value = getattr(owner, seam.name, None)
    if value is None:
        return "is missing"
    if seam.params is None:
        return None
    return signature_problem(getattr(value, "__func__", value), seam.params)


def signature_problem(function: Any, expected: tuple[str, ...]) -> str | None:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return "is not a function"
    names = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    rest = bool(expected) and expected[-1] == "..."
    head = list(expected[:-1] if rest else expected)
    if names[: len(head)] == head and (rest or len(names) == len(head)):
        return None
    return f"takes ({', '.join(names)}), the plugin was written for ({', '.join(expected)})"


def sets_attribute(cls: type, name: str, package: str) -> bool:
    """Whether the code of `cls` (or a base class from `package`) sets or reads `self.name`."""
    pattern = re.compile(rf"\bself\.{re.escape(name)}\b")
    for klass in cls.__mro__:
        if not klass.__module__.startswith(package):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if pattern.search(source):
            return True
    return False


def stored(owner: Any, name: str) -> Any:
    """What `owner` holds under `name` itself (a class's own attribute, not an inherited one)."""
    return owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)


def original(owner: Any, name: str) -> Any:
    """The server's function at a seam, unbound (a static or class method's function)."""
    value = stored(owner, name)
    return getattr(value, "__func__", value)


class Patches:
    """The patches a plugin made, applied all or none (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.made: list[tuple[Any, str, Any]] = []

    def apply(self, table: Iterable[tuple[Any, str, Any]]) -> None:
        """Applies every (owner, name, value) of `table`; if one fails, undoes
        the others and raises."""
        try:
            for owner, name, value in table:
                before = stored(owner, name)
                setattr(owner, name, value)
                self.made.append((owner, name, before))
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        while self.made:
            owner, name, before = self.made.pop()
            setattr(owner, name, before)


class Target:
    """The server a plugin patches: its release check and the all-or-nothing install."""

    def __init__(
        self, name: str, package: str, supported: tuple[str, ...], env_var: str, log: logging.Logger
    ) -> None:
        self.name = name  # as people write it: "vLLM"
        self.package = package  # as Python imports it: "vllm"
        self.supported = supported
        self.env_var = env_var
        self.log = log
        self.patches = Patches()
        self.untested_said = False

    def version(self) -> str | None:
        """The importable server's release if the plugin may patch it; else one
        log line says why not."""
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            self.log.warning("harmony-stream: %s is not installed; nothing to patch", self.name)
            return None
        version = str(getattr(module, "__version__", "unknown"))
        if version in self.supported:
            return version
        supported = ", ".join(self.supported)
        if switch(self.env_var) == FORCE:
            if not self.untested_said:
                self.untested_said = True
                self.log.warning(
                    "harmony-stream: %s %s is untested (tested: %s); %s=force: patching "
                    "only if every seam is as the plugin expects",
                    self.name,
                    version,
                    supported,
                    self.env_var,
                )
            return version
        self.log.warning(
            "harmony-stream: not patching %s %s: this plugin is tested on %s %s only "
            "(%s=force tries it anyway, if every seam is as the plugin expects)",
            self.name,
            version,
            self.package,
            supported,
            self.env_var,
        )
        return None

    def install(
        self,
        problems_of: Callable[[str], list[str]],
        table_of: Callable[[str], Iterable[tuple[Any, str, Any]]],
        what: str,
    ) -> bool:
        """Checks the release and every seam (``problems_of(version)``), then
        applies ``table_of(version)`` all or none (idempotent); False with one
        log line when it does not patch. ``what``: what runs on harmony-stream."""
        with self.patches.lock:
            if self.patches.made:
                return True
            version = self.version()
            if version is None:
                return False
            problems = problems_of(version)
            if problems:
                self.log.warning(
                    "harmony-stream: not patching %s %s: %s seam%s not as expected: %s",
                    self.name,
                    version,
                    len(problems),
                    "s are" if len(problems) > 1 else " is",
                    "; ".join(problems),
                )
                return False
            try:
                self.patches.apply(table_of(version))
            except Exception as e:
                self.log.warning(
                    "harmony-stream: not patching %s %s: a patch failed: %s", self.name, version, e
                )
                return False
            from . import __version__

            self.log.info(
                "harmony-stream %s active in %s %s: %s run on harmony-stream (%s=%s)",
                __version__,
                self.name,
                version,
                what,
                self.env_var,
                os.environ.get(self.env_var, "").strip(),
            )
            return True

    def uninstall(self) -> None:
        with self.patches.lock:
            self.patches.restore()


class InstallOnImport(importlib.abc.MetaPathFinder):
    """Calls ``install`` once one of ``modules`` has been imported (the
    outermost import of one, so no module is half-initialised then), then
    removes itself from ``sys.meta_path``. A subclass names both."""

    modules: tuple[str, ...] = ()
    depth = 0

    @staticmethod
    def install() -> object:
        raise NotImplementedError

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        cls = type(self)

        def exec_then_install(module: Any) -> None:
            cls.depth += 1
            try:
                exec_module(module)
            finally:
                cls.depth -= 1
            if cls.depth == 0:
                sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, cls)]
                cls.install()

        loader.exec_module = exec_then_install  # type: ignore[method-assign,union-attr]
        return spec


# ---------------------------------------------------------------------------
# The event engine, one per request


class Engine:
    """A request's ResponseStream, the events not yet handed to the server, and
    the messages the server's context reads (its tool loop, the next turn's prompt).

    The stream keeps its completed messages, so the context gets them from the
    one parse the engine makes. ``turn`` holds the current turn's tokens so that,
    should the engine fail, the server's parser can take over the turn from its
    start. A subclass sets ``log`` (the plugin's logger) and ``server``.
    """

    __slots__ = ("broken", "output", "pending", "stream", "turn", "turn_base")
    log = logging.getLogger("harmony_stream")
    server = "the server"

    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream
        self.pending: list[ResponseEvent] = [e for e in stream.start() if e.type not in ENVELOPE]
        self.output: list[Any] | None = None
        self.broken = False
        self.turn: list[int] = []
        self.turn_base = 0  # analysis_or_call_tokens when the turn began

    def feed(self, token_ids: Any) -> bool:
        """Feeds one engine output; True when it gave events."""
        if self.broken or self.stream.finished:
            return False
        try:
            events = self.stream.feed(token_ids)
        except InvalidTokenError:
            # As the servers' parsers do with a token they cannot take: skip it.
            events = []
            for t in token_ids:
                try:
                    events += self.stream.feed([t])
                except InvalidTokenError as e:
                    self.log.warning("harmony-stream: skipped token: %s", e)
        except HarmonyStreamError:
            self._break("feed")
            return False
        if events:
            self.pending += events
            return True
        return False

    def messages(self) -> list[Any]:
        """The messages completed since the last call, as ``openai_harmony.Message``."""
        taken = self.stream.take_messages()
        if not taken:
            return []
        from openai_harmony import Message

        return [Message.from_dict(m.to_dict()) for m in taken]

    def tool_output(self, text: str, is_error: bool) -> None:
        if self.broken or self.stream.finished:
            return
        if not self.stream.awaiting_tool_output:
            self.log.warning("harmony-stream: a tool result arrived with no call waiting; ignored")
            return
        try:
            if is_error:
                self.pending += self.stream.tool_output(error=text)
            else:
                self.pending += self.stream.tool_output(output=text)
        except HarmonyStreamError:
            self._break("tool_output")

    def drain(self) -> list[ResponseEvent]:
        events, self.pending = self.pending, []
        return events

    def close(self, reason: str | None) -> None:
        """Ends the stream (its closing events wait in ``pending``, the terminal
        one dropped: the server sends that); idempotent."""
        if self.broken or self.stream.finished:
            return
        try:
            known = reason if reason in FINISH_REASONS else "stop"
            events = self.stream.finish(cast(FinishReason, known))
        except HarmonyStreamError:
            self._break("finish")
            return
        self.pending += [e for e in events if e.type not in TERMINAL]
        self.output = list(self.stream.response()["output"])

    def finish(self, reason: str | None) -> list[ResponseEvent]:
        """The closing events not yet handed out; idempotent."""
        if self.broken:
            return []
        self.close(reason)
        return self.drain()

    def abandon(self) -> list[ResponseEvent]:
        """After the engine failed: its closing events for an ``error`` finish
        (the open item closed, the terminal event dropped), if the stream can
        still give them; else none. ``output`` is then the items so far."""
        if not self.stream.finished:
            try:
                self.pending += [e for e in self.stream.finish("error") if e.type not in TERMINAL]
                self.output = list(self.stream.response()["output"])
            except HarmonyStreamError:
                pass
        return self.drain()

    def _break(self, where: str) -> None:
        self.log.exception(
            "harmony-stream: the event engine failed in %s; %s's items kept", where, self.server
        )
        self.broken = True


def engine_tools(request: Any, *, exclude_unset: bool = False) -> list[dict[str, Any]]:
    """The request's tools the engine takes, with NaN and ±Infinity as null.

    ``exclude_unset``: a pydantic tool gives only the fields the client sent
    (a server whose one tool model has defaults for every tool type's fields).

    Servers read request JSON with ``json.loads``, which takes ``NaN``; JSON has
    no such number and the engine refuses it. The servers' own pydantic
    serialization writes it as ``null``, so the engine gets the same.
    """
    tools: list[dict[str, Any]] = []
    for tool in getattr(request, "tools", None) or ():
        if hasattr(tool, "model_dump"):
            d = tool.model_dump(exclude_none=True, exclude_unset=exclude_unset)
        else:
            d = dict(tool)
        if d.get("type") in ENGINE_TOOL_TYPES:
            tools.append(finite_or_null(d))
    return tools


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN or ±Infinity float replaced by None. Deeper than the
    engine takes (it refuses it then) is left as it is: no unbounded recursion."""

    def fix(v: Any, depth: int) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if depth < 256 and isinstance(v, dict):
            return {k: fix(x, depth + 1) for k, x in v.items()}
        if depth < 256 and isinstance(v, (list, tuple)):
            return [fix(x, depth + 1) for x in v]
        return v

    return fix(value, 0)


class SessionProxy:
    """A tool session that notes on the context whether the last MCP result was an error."""

    def __init__(self, session: Any, context: Any) -> None:
        self._hs_session = session
        self._hs_context = context

    async def call_tool(self, *args: Any, **kwargs: Any) -> Any:
        result = await self._hs_session.call_tool(*args, **kwargs)
        error = getattr(result, "is_error", None)
        if error is None:
            error = getattr(result, "isError", False)
        self._hs_context.__dict__["_hs_tool_error"] = bool(error)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hs_session, name)


def first_leaf(error: BaseException) -> BaseException:
    """An ExceptionGroup's first leaf (what the tool really raised); else `error`."""
    while getattr(error, "exceptions", None):
        error = getattr(error, "exceptions")[0]  # noqa: B009
    return error


def tool_error_message(call: Any, text: str) -> Any:
    """The tool's answer to `call` when the call raised: the error text."""
    from openai_harmony import Author, Message, Role

    message = Message.from_author_and_content(Author.new(Role.TOOL, call.recipient), text)
    if call.channel is not None:
        message = message.with_channel(call.channel)
    return message.with_recipient("assistant")


def tool_text(messages: Any) -> str:
    """The text of a tool's answer (its messages' text contents, joined)."""
    parts: list[str] = []
    for m in messages or ():
        for c in getattr(m, "content", None) or ():
            text = getattr(c, "text", None)
            if text is not None:
                parts.append(text)
    return "".join(parts)


# ---------------------------------------------------------------------------
# The response header


class HeaderMiddleware:
    """ASGI middleware: ``x-harmony-stream: VERSION`` on a plugin's endpoints.

    Only the response start of a request to one of ``paths`` (``/v1/responses``
    also covers its sub-paths) is touched, and only while ``is_active()``; other
    requests pass straight through.
    """

    def __init__(self, app: Any, *, paths: tuple[str, ...], is_active: Callable[[], bool]) -> None:
        from . import __version__

        self.app = app
        self.paths = paths
        self.is_active = is_active
        self.header = (HEADER.encode(), __version__.encode())

    def _covers(self, path: str) -> bool:
        return any(
            path == p or (p == "/v1/responses" and path.startswith(p + "/")) for p in self.paths
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not self._covers(path) or not self.is_active():
            await self.app(scope, receive, send)
            return
        header = self.header

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_header)
