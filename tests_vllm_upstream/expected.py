"""vLLM's own Harmony unit tests, run with the plugin on: what runs and what may differ.

Read by ``scripts/vllm_upstream_tests.py`` (and its pytest plugin,
``scripts/vllm_upstream_pytest.py``); ``make test-vllm-upstream-0.33.0`` runs it.

* ``PATHS``: the parts of vLLM's ``tests/`` tree that run (taken from the
  release's source distribution, fetched with pip and cached; never committed).
* ``EXPECTED_DIFFERENCES``: tests that fail with the plugin on because of an
  intended difference (a D-row of the README's table, or what the plugin
  replaces). Each must fail with the plugin on, by an ``AssertionError`` or the
  exceptions its entry names (strict xfail: a pass or another error fails the
  run), and pass with it off (the runner checks that too, on every run).
* ``CANNOT_RUN_HERE``: tests that need what this machine and CI do not have (the
  Hugging Face Hub, a GPU): deselected, never counted as passes.

An entry names a test by its pytest node id, or a whole file, class or
parametrized function by a prefix of it (``file.py``, ``file.py::Class``,
``file.py::test_name`` for every ``test_name[...]``). An entry that matches no
collected test fails the run (a stale list).
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERSIONS = ("0.33.0", "0.32.0")


@dataclass(frozen=True)
class Entry:
    """Tests (node ids or prefixes) that share one reason, on some vLLM versions."""

    reason: str
    tests: tuple[str, ...]
    versions: tuple[str, ...] = ALL_VERSIONS
    # expected differences: the exceptions (builtin names) the tests fail by
    raises: tuple[str, ...] = ("AssertionError",)


PATHS: tuple[str, ...] = (
    "tests/parser/test_harmony.py",
    "tests/entrypoints/openai/parser",
    "tests/entrypoints/openai/responses",
    "tests/entrypoints/unit_tests/test_context.py",
    "tests/entrypoints/openai/chat_completion/test_serving_chat.py",
    "tests/reasoning/test_gptoss_reasoning_parser.py",
)

EXPECTED_DIFFERENCES: tuple[Entry, ...] = (
    Entry(
        "the plugin streams from the tokens, not from HarmonyParser.process_chunk's segments "
        "(README, 'What it replaces': every request's tokens feed a ResponseStream): these "
        "tests mock process_chunk with hand-made segments and feed dummy token ids 0, 1, 2, "
        "which the plugin's engine parses as the real tokens '!', '\"', '#' (one message); "
        "what they check (the final response's items are the streamed ones, ids included; a "
        "zero-delta item has its own id, and is streamed: D1) the stream validators check on "
        "every plugin stream of tests_vllm/test_responses_plugin.py, from real tokens",
        (
            "tests/entrypoints/openai/responses/test_serving_responses.py"
            "::test_harmony_stream_completed_response_reuses_streamed_ids",
            "tests/entrypoints/openai/responses/test_serving_responses.py"
            "::test_harmony_stream_unstreamed_item_keeps_own_id",
        ),
        # the second unpacks the final response's two items: there is one
        raises=("AssertionError", "ValueError"),
    ),
)

CANNOT_RUN_HERE: tuple[Entry, ...] = (
    Entry(
        "needs the Hugging Face Hub: the openai/gpt-oss-20b tokenizer "
        "(AutoTokenizer.from_pretrained / vllm.tokenizers.get_tokenizer in a fixture)",
        (
            "tests/parser/test_harmony.py",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::TestServingChatWithHarmony",
        ),
    ),
    Entry(
        "needs the Hugging Face Hub: the openai-community/gpt2 config and tokenizer that "
        "OpenAIServingChat loads for the mocked model",
        (
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_returns_correct_model_name",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_admission_rejection_escapes_before_response_starts",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_should_set_correct_max_tokens",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_truncate_prompt_tokens_max_token_accounting",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_truncation_side_controls_prompt_truncation",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_starts_without_tokenizer",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_could_load_correct_generation_config",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_did_set_correct_cache_salt",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_serving_chat_data_parallel_rank_extraction",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_tool_choice_validation_without_parser",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_streaming_n_gt1_independent_tool_parsers",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_chat_kv_transfer_prompt_token_ids_rejects_invalid_ids",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_chat_kv_transfer_prompt_token_ids_rejection_notifies_kv_connector",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_chat_kv_transfer_prompt_token_ids_ignored_with_echo",
        ),
    ),
    Entry(
        "needs the Hugging Face Hub: the openai-community/gpt2 config and tokenizer that "
        "OpenAIServingChat loads for the mocked model (tests new in vLLM 0.33.0)",
        (
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_beam_search_preserves_request_priority",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::test_non_streaming_finish_reason_matches_tool_calls",
        ),
        versions=("0.33.0",),
    ),
    Entry(
        "needs a GPU and model weights from the Hugging Face Hub: starts a real vLLM server "
        "(tests.utils.RemoteOpenAIServer) with a model: openai/gpt-oss-20b, Qwen/Qwen3-8B, ... "
        "(with gpt-oss's tools, whose gpt_oss package the fixture asks for first)",
        (
            "tests/entrypoints/openai/responses/test_basic.py",
            "tests/entrypoints/openai/responses/test_function_call.py",
            "tests/entrypoints/openai/responses/test_harmony.py",
            "tests/entrypoints/openai/responses/test_mcp_tools.py::TestMCPEnabled",
            "tests/entrypoints/openai/responses/test_namespace_tool_separator.py",
            "tests/entrypoints/openai/responses/test_parsable_context.py",
            "tests/entrypoints/openai/responses/test_simple.py",
            "tests/entrypoints/openai/responses/test_stateful.py",
            "tests/entrypoints/openai/responses/test_structured_output.py",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::TestGPTOSSChat",
            "tests/entrypoints/openai/chat_completion/test_serving_chat.py::TestGPTOSSSpeculativeChat",
        ),
    ),
)
