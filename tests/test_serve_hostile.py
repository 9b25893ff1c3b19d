"""`harmony-stream serve` under attack: hostile requests, bodies, MCP servers, settings.

A real ``harmony-stream serve`` process listens on 127.0.0.1 (its console log
goes to a file the tests read); hostile MCP servers run in this process under
uvicorn, also on 127.0.0.1. The rules checked (README "Limits"):

- every refused request is an HTTP 4xx with OpenAI's error body
  ``{"error": {"message", "type", "param", "code"}}``, never a 500 and never a
  traceback in the log; ``param`` names the field when there is one;
- every event and every response is strict JSON (no NaN/Infinity);
- a body over the limit is a 413 as soon as the limit is passed (the rest is
  never read: the tests send no more and wait for the answer);
- an MCP error names the server's URL and the kind of failure, never the
  server's body (every hostile body holds `SECRET`);
- bad settings stop the server at start-up, naming the setting.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harmony_stream import Vocab
from harmony_stream.serve import ServeConfig, create_app, load_config

from _servers import (
    SECRET,
    FixedAnswer,
    Router,
    ScriptedMcp,
    ServerThread,
    free_port,
)

MODEL = "gpt-oss-120b"
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # README "Limits": 4 MiB unless configured
MAX_MCP_SERVERS = 8  # README "Limits": MCP servers (with a server_url) per request
MAX_DEPTH = 64  # README "Limits": JSON nesting
TIMEOUT_S = 10.0
OK_TOOLS = '[{"name": "search_issues", "inputSchema": {"type": "object"}}]'


# --------------------------------------------------------------------------- helpers


def strict_json(raw: bytes | str) -> Any:
    """`json.loads` that refuses NaN, Infinity and floats that overflow to infinity."""

    def constant(name: str) -> Any:
        raise ValueError(f"non-finite number {name} in {raw[:200]!r}")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {text}")
        return value

    return json.loads(raw, parse_constant=constant, parse_float=number)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.split(b"\n\n"):
        if block.strip():
            data = block[block.index(b"data: ") + 6 :]
            events.append(strict_json(data))
    return events


@dataclass
class Answer:
    status: int
    content_type: str
    raw: bytes

    def json(self) -> Any:
        return strict_json(self.raw)


def post(port: int, body: bytes | dict[str, Any], timeout: float = TIMEOUT_S) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/v1/responses", body=raw, headers={"content-type": "application/json"}
        )
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheader("content-type", ""), resp.read())
    finally:
        conn.close()


def assert_openai_error(answer: Answer, status: int, param: str | None = None) -> dict[str, Any]:
    """The answer is `status` with OpenAI's error body (and `param`, when given)."""
    assert answer.status == status, answer.raw[:500]
    assert answer.content_type.startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def read_http_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 answer (Content-Length framed) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return status, body[:length]


class Serve:
    """A `harmony-stream serve` process; its console log is a file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harmony_stream", "serve", "--port", str(self.port), *args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v1/models")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                assert self.proc.poll() is None, self.log()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, needle: str, since: int, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log()[since:].splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT_S)
        self.log_file.close()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    d = tmp_path_factory.mktemp("serve")
    config = d / "serve.json"
    config.write_text(json.dumps({"seed": 1, "mcp_timeout_s": 10}))
    s = Serve(["--config", str(config)], d / "serve.log")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def quiet(serve: Serve) -> Iterator[None]:
    """Nothing this test made the server do left a traceback (or a secret) in its log."""
    start = len(serve.log())
    yield
    time.sleep(0.05)  # the request's line is written after the answer
    new = serve.log()[start:]
    assert "Traceback" not in new, new
    assert "Exception in ASGI" not in new, new
    assert SECRET not in new, new


HANG = ScriptedMcp(OK_TOOLS, call="hang")
HOSTILE_APPS: dict[str, Any] = {
    # Not MCP at all: every body holds SECRET.
    "text": FixedAnswer(200, "text/plain", f"{SECRET}\n"),
    "html500": FixedAnswer(500, "text/html", f"<h1>{SECRET}</h1>"),
    "json404": FixedAnswer(404, "application/json", json.dumps({"detail": SECRET})),
    "json_garbage": FixedAnswer(200, "application/json", f"{{not json {SECRET}"),
    "json_not_rpc": FixedAnswer(200, "application/json", json.dumps({"internal": SECRET})),
    "rpc_error": FixedAnswer(
        200,
        "application/json",
        '{"jsonrpc": "2.0", "id": {id}, "error": {"code": -32000, "message": "' + SECRET + '"}}',
    ),
    "sse_garbage": FixedAnswer(200, "text/event-stream", f"event: message\ndata: {SECRET}\n\n"),
    # MCP that lists its tools, then answers the call with a body that is not JSON-RPC.
    "call_junk": ScriptedMcp(OK_TOOLS, call="junk"),
    # MCP whose tool list holds a non-finite number.
    "nan_schema": ScriptedMcp(
        '[{"name": "search_issues", "inputSchema": {"type": "object", "maximum": NaN}}]'
    ),
    "inf_schema": ScriptedMcp(
        '[{"name": "search_issues", "inputSchema": {"type": "object", "maximum": -Infinity}}]'
    ),
    "overflow_schema": ScriptedMcp(
        '[{"name": "search_issues", "inputSchema": {"type": "object", "maximum": 1e999}}]'
    ),
    "ok": ScriptedMcp(OK_TOOLS),
    "hang": HANG,
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """The base URL of the hostile servers (`/<name>/mcp`, names as in HOSTILE_APPS)."""
    with ServerThread(Router(HOSTILE_APPS)) as s:
        yield s.url


def mcp_tool(url: str, label: str = "github") -> dict[str, Any]:
    return {"type": "mcp", "server_label": label, "server_url": url, "require_approval": "never"}


# --------------------------------------------------------------------------- 1. text, integers

SURROGATE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("input string", {"input": "a\ud800b"}, "input"),
    ("input item text", {"input": [{"role": "user", "content": "\udfff"}]}, "input[0].content"),
    ("model", {"model": "gpt\ud800"}, "model"),
    ("metadata value", {"metadata": {"k": "\udbff"}}, "metadata.k"),
    ("metadata key", {"metadata": {"\ud800": "v"}}, "metadata"),
    ("function name", {"tools": [{"type": "function", "name": "f\ud800"}]}, "tools[0].name"),
    ("mcp label", {"tools": [{"type": "mcp", "server_label": "\udc00"}]}, "tools[0].server_label"),
    (
        "schema key",
        {"tools": [{"type": "function", "name": "f", "parameters": {"\ud800": {}}}]},
        "tools[0].parameters",
    ),
    ("transcript", {"transcript": "\ud800"}, "transcript"),
    ("instructions", {"instructions": "\ud800"}, "instructions"),
    ("unknown field", {"user": "\ud800"}, "user"),
]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    ("case", "fields", "param"), SURROGATE_CASES, ids=[c[0] for c in SURROGATE_CASES]
)
def test_lone_surrogates_are_a_400_naming_the_field(
    case: str, fields: dict[str, Any], param: str, serve: Serve
) -> None:
    body = {"model": MODEL, **fields}
    raw = json.dumps(body).encode()  # ensure_ascii: a lone surrogate is sent as \\udXXX
    assert b"\\ud" in raw
    for stream in (False, True):
        raw = json.dumps({**body, "stream": stream}).encode()
        error = assert_openai_error(post(serve.port, raw), 400, param)
        assert error["type"] == "invalid_request_error"
        assert "surrogate" in error["message"], error


@pytest.mark.usefixtures("quiet")
def test_a_surrogate_pair_is_text(serve: Serve) -> None:
    """A well-formed pair (\\ud83d\\ude00 is U+1F600) is a character, not an error."""
    tool = {"type": "function", "name": "f", "description": "\U0001f600"}
    raw = json.dumps({"model": MODEL, "input": "\U0001f600", "tools": [tool]}).encode()
    assert b"\\ud83d\\ude00" in raw
    answer = post(serve.port, raw)
    assert answer.status == 200, answer.raw
    assert answer.json()["tools"][0]["description"] == "\U0001f600"


BIG = 10**5000  # more digits than Python converts by default (4300)
INTEGER_CASES: list[tuple[str, str, str]] = [
    ("2^64", f'"max_output_tokens": {2**64}', "max_output_tokens"),
    ("2^53", f'"max_output_tokens": {2**53}', "max_output_tokens"),
    ("2^63", f'"max_output_tokens": {2**63}', "max_output_tokens"),
    ("-2^64", f'"max_output_tokens": {-(2**64)}', "max_output_tokens"),
    ("5001 digits", f'"max_output_tokens": {"9" * 5001}', "max_output_tokens"),
    ("top_logprobs 2^64", f'"top_logprobs": {2**64}', "top_logprobs"),
    (
        "5001 digits in a schema",
        '"tools": [{"type": "function", "name": "f", "parameters": {"maximum": '
        + "9" * 5001
        + "}}]",
        "tools[0].parameters.maximum",
    ),
]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    ("case", "field", "param"), INTEGER_CASES, ids=[c[0] for c in INTEGER_CASES]
)
def test_integers_out_of_range_are_a_400(case: str, field: str, param: str, serve: Serve) -> None:
    raw = ('{"model": "' + MODEL + '", ' + field + "}").encode()
    assert_openai_error(post(serve.port, raw), 400, param)


@pytest.mark.usefixtures("quiet")
def test_largest_max_output_tokens_is_accepted(serve: Serve) -> None:
    """The rule: max_output_tokens is an integer from 1 to 2^53 - 1 (the engine's
    largest count, the largest integer every JSON reader holds exactly)."""
    answer = post(serve.port, {"model": MODEL, "input": "x", "max_output_tokens": 2**53 - 1})
    assert answer.status == 200, answer.raw
    assert answer.json()["max_output_tokens"] == 2**53 - 1


def nested(depth: int) -> Any:
    """A JSON value `depth` levels deep: arrays inside objects inside arrays..."""
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_a_400(depth: int, serve: Serve) -> None:
    inner = "[" * depth + "]" * depth  # the "parameters" value alone is `depth` deep
    raw = (
        '{"model": "m", "tools": [{"type": "function", "name": "f", "parameters": ' + inner + "}]}"
    ).encode()
    error = assert_openai_error(post(serve.port, raw), 400)
    assert f"{MAX_DEPTH} levels" in error["message"], error


@pytest.mark.usefixtures("quiet")
def test_nesting_at_the_limit_is_accepted(serve: Serve) -> None:
    # The body is level 1, "tools" 2, the tool 3, "parameters" 4 and more.
    parameters = nested(MAX_DEPTH - 3)
    body = {"model": MODEL, "tools": [{"type": "function", "name": "f", "parameters": parameters}]}
    answer = post(serve.port, body)
    assert answer.status == 200, answer.raw
    assert answer.json()["tools"][0]["parameters"] == parameters


# --------------------------------------------------------------------------- 2. non-finite numbers

NON_FINITE_CASES: list[tuple[str, str, str]] = [
    (
        "NaN in a schema",
        '"tools": [{"type": "function", "name": "f", '
        '"parameters": {"properties": {"x": {"maximum": NaN}}}}]',
        "tools[0].parameters.properties.x.maximum",
    ),
    (
        "Infinity in a schema",
        '"tools": [{"type": "function", "name": "f", "parameters": {"minimum": Infinity}}]',
        "tools[0].parameters.minimum",
    ),
    (
        "-Infinity in an mcp tool",
        '"tools": [{"type": "mcp", "server_label": "s", "x": [1, -Infinity]}]',
        "tools[0].x[1]",
    ),
    ("NaN temperature", '"temperature": NaN', "temperature"),
    ("1e999 top_p", '"top_p": 1e999', "top_p"),
    ("-1e999 in input", '"input": [{"role": "user", "content": "x", "w": -1e999}]', "input[0].w"),
]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    ("case", "field", "param"), NON_FINITE_CASES, ids=[c[0] for c in NON_FINITE_CASES]
)
def test_non_finite_numbers_in_a_request_are_a_400(
    case: str, field: str, param: str, serve: Serve
) -> None:
    for stream in ("false", "true"):
        raw = ('{"model": "' + MODEL + '", "stream": ' + stream + ", " + field + "}").encode()
        error = assert_openai_error(post(serve.port, raw), 400, param)
        assert "non-finite" in error["message"], error


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("name", ["nan_schema", "inf_schema", "overflow_schema"])
def test_non_finite_numbers_in_an_mcp_tool_list_are_that_servers_error(
    name: str, serve: Serve, hostile: str
) -> None:
    url = f"{hostile}/{name}/mcp"
    for stream in (False, True):
        body = {
            "model": MODEL,
            "input": "x",
            "stream": stream,
            "tools": [mcp_tool(url)],
            "metadata": {"transcript": "mcp_call"},
        }
        answer = post(serve.port, body)
        error = assert_openai_error(answer, 424)
        assert error["type"] == "external_connector_error"
        assert "'github'" in error["message"]
        assert "non-finite number" in error["message"]


# --------------------------------------------------------------------------- 3. body size


def raw_request(port: int, head: str, body_parts: list[bytes], timeout: float = TIMEOUT_S) -> Any:
    """Sends `head` and the parts, then waits (sending nothing more) for the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        return read_http_answer(sock)


@pytest.mark.usefixtures("quiet")
def test_content_length_over_the_limit_is_a_413_before_the_body(serve: Serve) -> None:
    """Content-Length says 200 MB; nothing of the body is sent: the answer comes anyway."""
    head = (
        "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {200 * 1024 * 1024}\r\n\r\n"
    )
    started = time.monotonic()
    status, body = raw_request(serve.port, head, [])
    assert time.monotonic() - started < 5
    error = assert_openai_error(Answer(status, "application/json", body), 413)
    assert str(DEFAULT_MAX_BODY) in error["message"]


def chunked(data: bytes, size: int = 65536) -> list[bytes]:
    return [
        f"{len(data[i : i + size]):x}\r\n".encode() + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    ]


@pytest.mark.usefixtures("quiet")
def test_chunked_body_over_the_limit_is_a_413_while_reading(serve: Serve) -> None:
    """One byte over the limit, in chunks, and no final chunk: counted as it comes."""
    head = (
        "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    )
    status, body = raw_request(serve.port, head, chunked(b" " * (DEFAULT_MAX_BODY + 1)))
    error = assert_openai_error(Answer(status, "application/json", body), 413)
    assert str(DEFAULT_MAX_BODY) in error["message"]


@pytest.mark.usefixtures("quiet")
def test_a_body_at_the_limit_is_served(serve: Serve) -> None:
    prefix = b'{"model": "' + MODEL.encode() + b'", "input": "'
    suffix = b'"}'
    raw = prefix + b"x" * (DEFAULT_MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(raw) == DEFAULT_MAX_BODY
    answer = post(serve.port, raw, timeout=30)
    assert answer.status == 200, answer.raw[:300]
    assert answer.json()["status"] == "completed"
    # Chunked, the same body is served too.
    head = (
        "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    )
    status, body = raw_request(serve.port, head, [*chunked(raw), b"0\r\n\r\n"], timeout=30)
    assert status == 200, body[:300]


def test_the_body_limit_is_a_config_key(vocab: Vocab, tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"max_body_bytes": 1000}))
    config = load_config(path)
    with ServerThread(create_app(config, vocab=vocab)) as s:
        base = {"model": MODEL, "input": ""}
        pad = 1000 - len(json.dumps(base).encode())
        at_limit = json.dumps({**base, "input": "x" * pad}).encode()
        assert len(at_limit) == 1000
        assert post(s.port, at_limit).status == 200
        over = json.dumps({**base, "input": "x" * (pad + 1)}).encode()
        error = assert_openai_error(post(s.port, over), 413)
        assert "1000 bytes" in error["message"]


# --------------------------------------------------------------------------- 4. MCP server URLs


NOT_MCP = ["text", "html500", "json404", "json_garbage", "json_not_rpc", "rpc_error", "sse_garbage"]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("name", NOT_MCP)
def test_mcp_errors_never_quote_the_servers_body(name: str, serve: Serve, hostile: str) -> None:
    url = f"{hostile}/{name}/mcp"
    for stream in (False, True):
        body = {"model": MODEL, "input": "x", "stream": stream, "tools": [mcp_tool(url)]}
        answer = post(serve.port, body)
        assert SECRET.encode() not in answer.raw
        error = assert_openai_error(answer, 424)
        assert url in error["message"]
        assert "'github'" in error["message"]
        if name == "html500":
            assert "HTTP 500" in error["message"]


@pytest.mark.usefixtures("quiet")
def test_an_mcp_call_answered_with_junk_fails_without_the_body(serve: Serve, hostile: str) -> None:
    url = f"{hostile}/call_junk/mcp"
    body = {
        "model": MODEL,
        "input": "x",
        "tools": [mcp_tool(url)],
        "metadata": {"transcript": "mcp_call"},
    }
    answer = post(serve.port, body)
    assert SECRET.encode() not in answer.raw
    assert answer.status == 200
    (call,) = [item for item in answer.json()["output"] if item["type"] == "mcp_call"]
    assert call["status"] == "failed"
    assert url in call["error"]["content"][0]["text"], call
    streamed = post(serve.port, {**body, "stream": True})
    assert SECRET.encode() not in streamed.raw
    events = sse_events(streamed.raw)
    assert "response.mcp_call.failed" in [e["type"] for e in events]


@pytest.mark.usefixtures("quiet")
def test_more_mcp_servers_than_the_cap_is_a_400(serve: Serve, hostile: str) -> None:
    over = [mcp_tool(f"{hostile}/ok/mcp{i}", f"s{i}") for i in range(MAX_MCP_SERVERS + 1)]
    error = assert_openai_error(post(serve.port, {"model": MODEL, "tools": over}), 400, "tools")
    assert f"at most {MAX_MCP_SERVERS} MCP servers" in error["message"]
    # At the cap: every server is listed.
    at_cap = over[:MAX_MCP_SERVERS]
    answer = post(serve.port, {"model": MODEL, "input": "x", "tools": at_cap})
    assert answer.status == 200, answer.raw
    listed = [i["server_label"] for i in answer.json()["output"] if i["type"] == "mcp_list_tools"]
    assert listed == [t["server_label"] for t in at_cap]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://", "127.0.0.1:80/mcp"]
)
def test_an_mcp_server_url_that_is_not_http_is_a_400(url: str, serve: Serve) -> None:
    error = assert_openai_error(
        post(serve.port, {"model": MODEL, "tools": [mcp_tool(url)]}), 400, "tools[0].server_url"
    )
    assert "http" in error["message"]


# --------------------------------------------------------------------------- 5. exposure


def test_a_non_loopback_host_warns_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning is printed before uvicorn binds (uvicorn is not run: nothing is exposed)."""
    import uvicorn

    from harmony_stream.serve import run

    run_module = sys.modules["harmony_stream.serve.run"]  # the package's `run` is the function

    bound: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, **kw: bound.append(host))
    # The console handler would outlive this test's captured stderr.
    monkeypatch.setattr(run_module, "configure_logging", lambda level: None)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        run(ServeConfig(), host=host, port=1)
        assert "WARNING" not in capsys.readouterr().err, host
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        run(ServeConfig(), host=host, port=1)
        err = capsys.readouterr().err
        assert "WARNING" in err, host
        assert host in err
        assert "no authentication" in err
        assert "mcp_allowed_hosts" in err
    assert len(bound) == 8


def test_mcp_allowed_hosts(vocab: Vocab, tmp_path: Path, hostile: str) -> None:
    port = hostile.rsplit(":", 1)[1]
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"mcp_allowed_hosts": ["localhost", "127.0.0.*"]}))
    with ServerThread(create_app(load_config(path), vocab=vocab)) as s:
        for url in (f"http://localhost:{port}/ok/mcp", f"http://127.0.0.1:{port}/ok/mcp"):
            answer = post(s.port, {"model": MODEL, "input": "x", "tools": [mcp_tool(url)]})
            assert answer.status == 200, answer.raw
        for host in ("127.0.1.1", "localhost.example", "[::1]"):
            url = f"http://{host}:{port}/ok/mcp"
            error = assert_openai_error(
                post(s.port, {"model": MODEL, "tools": [mcp_tool(url)]}), 400, "tools[0].server_url"
            )
            assert host.strip("[]") in error["message"]
            assert "mcp_allowed_hosts" in error["message"]


# --------------------------------------------------------------------------- 6. settings


def config_error() -> type[Exception]:
    from harmony_stream.serve import ServeConfigError

    return ServeConfigError


BAD_SETTINGS: list[tuple[str, Any]] = [
    ("step_delay_ms", -1),
    ("step_delay_ms", math.nan),
    ("step_delay_ms", math.inf),
    ("step_delay_ms", "5"),
    ("step_delay_ms", 10**400),
    ("mcp_timeout_s", 0),
    ("mcp_timeout_s", -3),
    ("mcp_timeout_s", math.nan),
    ("mcp_timeout_s", math.inf),
    ("step", 0),
    ("step", -2),
    ("step", 1.5),
    ("step", True),
    ("seed", -1),
    ("seed", 1.0),
    ("max_body_bytes", 0),
    ("max_body_bytes", -5),
    ("max_body_bytes", 1.5),
    ("mcp_allowed_hosts", "localhost"),
    ("mcp_allowed_hosts", [""]),
]


@pytest.mark.parametrize(
    ("key", "value"), BAD_SETTINGS, ids=[f"{k}={v!r}" for k, v in BAD_SETTINGS]
)
def test_bad_settings_are_refused_naming_them(key: str, value: Any, tmp_path: Path) -> None:
    error = config_error()
    assert issubclass(error, ValueError)
    with pytest.raises(error, match=key):
        ServeConfig(**{key: value})
    config = ServeConfig()
    with pytest.raises(error, match=key):
        setattr(config, key, value)  # as the command line sets them
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({key: value}))  # NaN and Infinity as Python writes them
    with pytest.raises(error, match=key):
        load_config(path)


@pytest.mark.parametrize(
    "args", [["--delay-ms", "-5"], ["--delay-ms", "nan"], ["--delay-ms", "inf"], ["--seed", "-1"]]
)
def test_bad_flags_stop_the_command_with_exit_2(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_stream", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("harmony-stream: error: "), proc.stderr
    assert args[0] in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- 7. a client gives up


def test_a_non_streaming_client_that_leaves_stops_the_replay(serve: Serve, hostile: str) -> None:
    """The MCP call hangs; the client gives up after 0.5 s: the replay and its MCP
    session stop within 2 s (the server's line says so, the MCP server sees its
    client go), not after the MCP timeout (10 s here)."""
    start = len(serve.log())
    body = {
        "model": MODEL,
        "input": "x",
        "tools": [mcp_tool(f"{hostile}/hang/mcp")],
        "metadata": {"transcript": "mcp_call"},
    }
    conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=TIMEOUT_S)
    conn.request("POST", "/v1/responses", body=json.dumps(body))
    assert HANG.call_started.wait(TIMEOUT_S), serve.log()[start:]
    time.sleep(0.5)
    conn.close()
    left = time.monotonic()
    line = serve.wait_for_line("POST /v1/responses transcript=mcp_call", start, timeout=2.0)
    assert line is not None, serve.log()[start:]
    assert "stream=False" in line
    assert line.endswith("client disconnected: replay stopped"), line
    assert HANG.call_dropped.wait(2.0)
    assert HANG.dropped_at is not None
    assert HANG.dropped_at - left < 2.0
    assert "Traceback" not in serve.log()[start:]


# ----------------------------------------------------------------- flags, and one replay rule


def test_body_limit_and_mcp_hosts_as_flags(tmp_path: Path, hostile: str) -> None:
    s = Serve(
        ["--max-body-bytes", "1000", "--mcp-allowed-host", "localhost"], tmp_path / "serve.log"
    )
    try:
        over = json.dumps({"model": MODEL, "input": "x" * 1000}).encode()
        assert "1000 bytes" in assert_openai_error(post(s.port, over), 413)["message"]
        port = hostile.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/ok/mcp"
        body = {"model": MODEL, "input": "x", "tools": [mcp_tool(url)]}
        error = assert_openai_error(post(s.port, body), 400, "tools[0].server_url")
        assert "127.0.0.1" in error["message"]
    finally:
        s.close()


def _two_turns(finish: str) -> dict[str, Any]:
    # "<|channel|>final<|message|>Hi" cut, then a turn the model never got to.
    return {
        "turns": [
            {"tokens": [200005, 17196, 200008, 12194], "finish_reason": finish},
            {"tokens": [200006, 173781, 200005, 17196, 200008, 12194, 200002]},
        ]
    }


def test_server_and_command_line_end_a_replay_by_the_same_rule(
    vocab: Vocab, tmp_path: Path
) -> None:
    """A non-final turn that ends with `length`: the server's response is what
    `replay_response` (the command line's replay) gives: incomplete, one item."""
    from harmony_stream.replay import replay_response
    from harmony_stream.transcript import load_transcript

    path = tmp_path / "cut.json"
    path.write_text(json.dumps(_two_turns("length")))
    want = replay_response(load_transcript(path), vocab)
    s = Serve([str(path)], tmp_path / "serve.log")
    try:
        answer = post(s.port, {"model": MODEL, "input": "x"})
    finally:
        s.close()
    got = strict_json(answer.raw)
    assert (got["status"], want["status"]) == ("incomplete", "incomplete")
    texts = [[c["text"] for c in item["content"]] for item in got["output"]]
    assert texts == [[c["text"] for c in item["content"]] for item in want["output"]]
    assert got["usage"]["output_tokens"] == want["usage"]["output_tokens"] == 4


def test_a_transcript_the_command_line_refuses_stops_the_server(tmp_path: Path) -> None:
    # A tool output after a turn that made no call.
    path = tmp_path / "x.json"
    doc = _two_turns("stop")
    doc["turns"].insert(1, {"tool_output": {"output": "r", "error": None}})
    path.write_text(json.dumps(doc))
    cli = [sys.executable, "-m", "harmony_stream"]
    events = subprocess.run([*cli, "events", str(path)], capture_output=True, text=True)
    serve = subprocess.run(
        [*cli, "serve", "--port", "0", str(path)], capture_output=True, text=True, timeout=60
    )
    assert events.returncode == serve.returncode == 2
    why = "turns[1]: tool_output follows a turn that made no call"
    assert why in events.stderr
    assert why in serve.stderr
    assert "Traceback" not in serve.stderr
