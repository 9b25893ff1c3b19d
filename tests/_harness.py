"""Runs a token stream through openai-harmony (the oracle) and through us, the same way.

Both runs record, per token: the content delta, the state, role, channel,
recipient and content type; then the first error's index and the messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Role, StreamableParser

from harmony_stream import HarmonyError, HarmonyParser, Vocab

# Recoveries after which lenient mode intentionally differs from openai-harmony non-strict.
INTENTIONAL_FIXES = frozenset(
    {"constrain_as_recipient", "channel_normalized", "repeated_start", "text_in_header"}
)

Snapshot = tuple[str, str | None, str | None, str | None, str | None]


@dataclass
class Run:
    deltas: list[str | None] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    error_index: int | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)

    def comparable(self) -> tuple[Any, ...]:
        return (self.deltas, self.snapshots, self.error_index, self.messages)


def _msg_dict(d: dict[str, Any]) -> dict[str, Any]:
    # openai-harmony's Role is a str enum; compare plain values.
    out = dict(d)
    out["role"] = str(getattr(out["role"], "value", out["role"]))
    return out


def run_oracle(
    enc: Any, tokens: list[int], *, strict: bool, role: str | None = "assistant", eos: bool = True
) -> Run:
    parser = StreamableParser(enc, Role(role) if role else None, strict=strict)
    run = Run()
    for i, tok in enumerate(tokens):
        try:
            parser.process(tok)
        except Exception:
            run.error_index = i
            break
        run.deltas.append(parser.last_content_delta)
        cr = parser.current_role
        run.snapshots.append(
            (
                parser.state.value,
                cr.value if cr is not None else None,
                parser.current_channel,
                parser.current_recipient,
                parser.current_content_type,
            )
        )
    if run.error_index is None and eos:
        try:
            parser.process_eos()
        except Exception:
            run.error_index = len(tokens)
    run.messages = [_msg_dict(m.to_dict()) for m in parser.messages]
    return run


def run_ours(
    vocab: Vocab,
    tokens: list[int],
    *,
    strict: bool,
    role: str | None = "assistant",
    eos: bool = True,
) -> Run:
    parser = HarmonyParser(vocab, role, strict=strict)  # type: ignore[arg-type]
    run = Run()
    for i, tok in enumerate(tokens):
        try:
            delta = parser.process(tok)
        except HarmonyError as e:
            assert e.token_index == i, (e.token_index, i)
            run.error_index = i
            break
        assert delta == parser.last_content_delta
        run.deltas.append(delta)
        run.snapshots.append(
            (
                parser.state.value,
                parser.current_role,
                parser.current_channel,
                parser.current_recipient,
                parser.current_content_type,
            )
        )
    if run.error_index is None and eos:
        try:
            parser.process_eos()
        except HarmonyError as e:
            assert e.token_index == len(tokens)
            run.error_index = len(tokens)
    run.messages = [m.to_dict() for m in parser.messages]
    run.recoveries = [r.kind for r in parser.recoveries]
    return run


def check_against_oracle(
    enc: Any, vocab: Vocab, tokens: list[int], *, role: str | None = "assistant"
) -> tuple[Run, Run]:
    """Asserts the two rules; returns (our lenient run, oracle non-strict run).

    Strict: identical to openai-harmony strict (deltas, states, error index, messages).
    Lenient: identical to openai-harmony non-strict whenever that one succeeds and no
    intentional fix was applied; never an error on valid ids.
    """
    o_strict = run_oracle(enc, tokens, strict=True, role=role)
    u_strict = run_ours(vocab, tokens, strict=True, role=role)
    assert u_strict.comparable() == o_strict.comparable(), (tokens, u_strict, o_strict)
    assert u_strict.recoveries == []

    o_lax = run_oracle(enc, tokens, strict=False, role=role)
    u_lax = run_ours(vocab, tokens, strict=False, role=role)
    assert u_lax.error_index is None, (tokens, u_lax)
    if o_lax.error_index is None and not INTENTIONAL_FIXES.intersection(u_lax.recoveries):
        assert u_lax.comparable() == o_lax.comparable(), (tokens, u_lax, o_lax)
    return u_lax, o_lax
