"""The Agents SDK (`openai-agents`) runs a turn against `harmony-stream serve`.

An `Agent` on `OpenAIResponsesModel` pointed at the replay server, with a
function tool (run by the Agents SDK, its result sent back in the next request
as `function_call_output`) and a hosted MCP tool answered by a real MCP server.
The bundled `weather_agent` transcript is chosen by best fit (the request offers
exactly the tools it calls).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    HostedMCPTool,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    function_tool,
)
from agents.items import ToolCallOutputItem
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from harmony_stream import Vocab
from harmony_stream.serve import ServeConfig, bundled_corpus_dir, create_app
from harmony_stream.transcript import ToolOutput, load_transcript

from _servers import ServerThread, convert_temperature, units_server

LOGGER = "harmony_stream.serve"


@pytest.fixture(scope="module")
def units_url() -> Iterator[str]:
    with ServerThread(units_server().streamable_http_app()) as units:
        yield f"{units.url}/mcp"


@pytest.fixture(scope="module")
def server(vocab: Vocab) -> Iterator[ServerThread]:
    with ServerThread(create_app(ServeConfig(), vocab=vocab)) as s:
        yield s


async def direct_call(url: str, name: str, args: dict[str, Any]) -> str:
    """The MCP server's answer to the same call, through a separate session (the oracle)."""
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(name, args)
        assert not result.is_error
        text: str = result.content[0].text  # type: ignore[union-attr]
        return text


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_agent_turn_with_function_and_hosted_mcp(
    streamed: bool,
    server: ServerThread,
    units_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    calls: list[dict[str, Any]] = []

    @function_tool
    def get_weather(location: str, unit: str = "celsius") -> str:
        """Current weather for a city."""
        calls.append({"location": location, "unit": unit})
        return json.dumps({"location": location, "temperature": 18, "unit": unit})

    async def run() -> Any:
        client = openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key="dummy", max_retries=0, timeout=30
        )
        agent = Agent(
            name="weather",
            instructions="Answer weather questions.",
            model=OpenAIResponsesModel(model="gpt-oss-120b", openai_client=client),
            tools=[
                get_weather,
                HostedMCPTool(
                    tool_config={
                        "type": "mcp",
                        "server_label": "units",
                        "server_url": units_url,
                        "require_approval": "never",
                    }
                ),
            ],
        )
        question = "Tomorrow's temperature in Paris, in Fahrenheit?"
        config = RunConfig(tracing_disabled=True)
        if not streamed:
            return await Runner.run(agent, question, run_config=config, max_turns=4)
        result = Runner.run_streamed(agent, question, run_config=config, max_turns=4)
        events = 0
        async for _ in result.stream_events():
            events += 1
        assert events > 0
        return result

    result = asyncio.run(run())

    # Two model requests: the function call, then (after the SDK ran the function
    # and sent its output back) the MCP call and the answer.
    first, second = (r.output for r in result.raw_responses)
    assert [item.type for item in first] == ["mcp_list_tools", "reasoning", "function_call"]
    fc = first[-1]
    assert calls == [json.loads(fc.arguments)]
    outputs = [i for i in result.new_items if isinstance(i, ToolCallOutputItem)]
    raw_outputs: list[Any] = [o.raw_item for o in outputs]
    assert [raw["call_id"] for raw in raw_outputs] == [fc.call_id]
    assert outputs[0].output == get_weather_output(calls[0])

    listed = first[0]
    assert [t.name for t in listed.tools] == ["convert_temperature"]
    mcp_calls = [item for item in second if item.type == "mcp_call"]
    assert len(mcp_calls) == 1
    mcp_call = mcp_calls[0]
    assert mcp_call.server_label == "units"
    args = json.loads(mcp_call.arguments)
    real = asyncio.run(direct_call(units_url, mcp_call.name, args))
    assert mcp_call.status == "completed"
    assert mcp_call.output == real == convert_temperature(**args)
    recorded = [
        turn.output
        for turn in load_transcript(bundled_corpus_dir() / "weather_agent.json").turns
        if isinstance(turn, ToolOutput)
    ]
    assert real not in recorded  # what was streamed is not the transcript's recording

    message = second[-1]
    assert message.type == "message"
    assert result.final_output == "".join(c.text for c in message.content)

    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "transcript=weather_agent segment=0" in lines[-2]
    assert "transcript=weather_agent segment=1" in lines[-1]
    assert all(f"stream={streamed}" in line for line in lines[-2:])


def get_weather_output(call: dict[str, Any]) -> str:
    """What the test's function returns for these arguments."""
    return json.dumps({"location": call["location"], "temperature": 18, "unit": call["unit"]})
