"""``ResponseStream(keep_messages=True)``: the model's messages from the engine's one parse.

A server whose own loop reads the model's messages (vLLM's tool loop and next-turn
prompt) takes them from the stream instead of parsing the tokens a second time.

The rules, checked over random token sequences, random steps, ``tool_output`` tried
at random points and every finish reason:

* ``take_messages()``, gathered after every call, are exactly the messages the
  lenient ``HarmonyParser`` reads from each completion (a completion ends at each
  accepted ``tool_output``), ``process_eos()`` included, each once and in order;
* ``analysis_or_call_tokens`` is, over every completion, the number of regular
  tokens after which the lenient parser is inside a message on ``analysis``, or on
  ``commentary`` with a recipient (vLLM's rule for reasoning tokens);
* keeping messages changes no event: the events equal those of a stream without it,
  whose ``take_messages()`` stays empty.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_conservation import random_calls
from test_events_properties import TERMINAL_FOR, _settings, garbage_pieces

from harmony_stream import HarmonyParser, ResponseStream, Vocab

ID_SEED = 5


def _stream(vocab: Vocab, keep: bool) -> ResponseStream:
    tools: list[dict[str, Any]] = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
        {"type": "mcp", "server_label": "github"},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "web_search_preview"},
    ]
    return ResponseStream(vocab, tools=tools, id_seed=ID_SEED, created_at=0, keep_messages=keep)


def reference(vocab: Vocab, completions: list[list[int]]) -> tuple[list[dict[str, Any]], int]:
    """The lenient parser's messages over each completion, and the tokens counted
    by the rule above."""
    messages: list[dict[str, Any]] = []
    counted = 0
    for tokens in completions:
        p = HarmonyParser(vocab, "assistant", strict=False)
        for t in tokens:
            p.process(t)
            channel, call = p.current_channel, p.current_recipient is not None
            if t < vocab.n_regular and (
                channel == "analysis" or (channel == "commentary" and call)
            ):
                counted += 1
        p.process_eos()
        messages += [m.to_dict() for m in p.messages]
    return messages, counted


@_settings(800)
@given(data=st.data())
def test_kept_messages_are_the_parsers(enc: Any, vocab: Vocab, data: Any) -> None:
    pieces = garbage_pieces(enc, vocab)
    choice = data.draw(st.lists(st.integers(0, len(pieces) - 1), max_size=40), label="pieces")
    tokens = [t for i in choice for t in pieces[i]]
    kept, plain = _stream(vocab, True), _stream(vocab, False)
    taken: list[dict[str, Any]] = []

    def both(call: str, *args: Any) -> None:
        a = getattr(kept, call)(*args)  # a refusal raises here, before `plain` is called
        b = getattr(plain, call)(*args)
        assert [e.model_dump_json() for e in a] == [e.model_dump_json() for e in b]
        taken.extend(m.to_dict() for m in kept.take_messages())
        assert plain.take_messages() == []

    completions = random_calls(data, tokens, both)
    both("finish", data.draw(st.sampled_from(sorted(TERMINAL_FOR)), label="reason"))
    want, counted = reference(vocab, completions)
    assert taken == want
    assert kept.analysis_or_call_tokens == counted
    assert kept.take_messages() == []  # each message once


def test_a_cut_message_is_kept(enc: Any, vocab: Vocab) -> None:
    s = _stream(vocab, True)
    s.feed(enc.encode("<|channel|>analysis<|message|>Thinking about it", allowed_special="all"))
    assert s.take_messages() == []
    s.finish("length")
    [m] = s.take_messages()
    assert (m.channel, m.content) == ("analysis", "Thinking about it")
