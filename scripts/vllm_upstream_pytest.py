"""pytest plugin for vLLM's own Harmony tests (``scripts/vllm_upstream_tests.py``).

Loaded with ``-p vllm_upstream_pytest`` inside the vLLM virtualenv, from the
cached copy of vLLM's ``tests/`` tree. It:

* loads vLLM's general plugins (``vllm.plugins.load_general_plugins()``, as vLLM
  does in every process it starts) before vLLM's conftests and test modules are
  imported, and checks that harmony-stream's plugin is active (or, with the
  plugin off, that it is not), then checks it again before every test;
* reads ``tests_vllm_upstream/expected.py``: deselects the tests that cannot run
  here, marks the expected differences strict xfail (plugin on only), and
  fails the run on an entry that matches no collected test;
* writes every test's outcome to a JSON report for the runner's summary.

Settings come from the runner through the environment: ``HS_UPSTREAM_EXPECTED``
(the expected.py path), ``HS_UPSTREAM_VLLM_VERSION``, ``HS_UPSTREAM_PLUGIN``
(``on``/``off``), ``HS_UPSTREAM_MODE`` (``full``: every path, list checked;
``only``: the node ids given, no deselection; ``cannot-run``: only the tests
listed as unable to run here) and ``HS_UPSTREAM_REPORT``.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load_expected(path: str | Path) -> ModuleType:
    """``tests_vllm_upstream/expected.py`` as a module (it is not on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("hs_vllm_upstream_expected", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up by name while the class body runs
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def matches(entry: str, nodeid: str) -> bool:
    """A node id, or a prefix ending at a file, class or parametrized function."""
    return nodeid == entry or nodeid.startswith((entry + "::", entry + "["))


# what a failure's report says when the test needed what this machine does not have
NEEDS = (
    ("the Hugging Face Hub", ("huggingface.co", "LocalEntryNotFoundError", "OfflineModeIsEnabled")),
    ("a GPU", ("Failed to infer device type",)),
    # a server fixture's first check, before it starts vLLM with gpt-oss's tools
    ("a GPU server with the gpt_oss package", ("require gpt_oss package",)),
)


def failure_kind(text: str) -> str:
    """``needs X`` for a failure from the Hub or a missing GPU, else its last error line."""
    for what, markers in NEEDS:
        if any(marker in text for marker in markers):
            return f"needs {what}"
    lines = [line for line in text.splitlines() if line.startswith("E ")] or text.splitlines()
    return lines[-1][:300] if lines else ""


@dataclass
class Selection:
    """The entries that apply to this vLLM version, by reason, and what they matched."""

    expected: dict[str, str] = field(default_factory=dict)  # entry -> reason
    raises: dict[str, tuple[type[BaseException], ...]] = field(default_factory=dict)
    cannot_run: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    @classmethod
    def for_version(cls, module: ModuleType, version: str) -> Selection:
        sel = cls()
        for entry in module.EXPECTED_DIFFERENCES:
            if version in entry.versions:
                raises = tuple(getattr(builtins, name) for name in entry.raises)
                for test in entry.tests:
                    sel.expected[test] = entry.reason
                    sel.raises[test] = raises
        for entry in module.CANNOT_RUN_HERE:
            if version in entry.versions:
                for test in entry.tests:
                    sel.cannot_run[test] = entry.reason
        return sel

    def find(self, table: dict[str, str], nodeid: str) -> str | None:
        entry = self.entry(table, nodeid)
        return None if entry is None else table[entry]

    def entry(self, table: dict[str, str], nodeid: str) -> str | None:
        for entry in table:
            if matches(entry, nodeid):
                self.used.add(entry)
                return entry
        return None


class UpstreamPlugin:
    def __init__(self) -> None:
        env = os.environ
        self.version = env["HS_UPSTREAM_VLLM_VERSION"]
        self.plugin_on = env["HS_UPSTREAM_PLUGIN"] == "on"
        self.mode = env.get("HS_UPSTREAM_MODE", "full")
        self.report_path = env.get("HS_UPSTREAM_REPORT")
        self.selection = Selection.for_version(
            load_expected(env["HS_UPSTREAM_EXPECTED"]), self.version
        )
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, str] = {}
        self.expected_ids: list[str] = []
        self.deselected_ids: list[str] = []
        self.active = False

    def load_vllm_plugins(self) -> None:
        import vllm
        from vllm.plugins import load_general_plugins

        from harmony_stream import vllm_plugin

        if vllm.__version__ != self.version:
            raise pytest.UsageError(f"vLLM {vllm.__version__} installed, {self.version} expected")
        load_general_plugins()
        # The plugin patches vLLM once a serving module is imported (an import
        # hook until then): active now, or armed, with the plugin on; neither off.
        armed = any(type(f).__name__ == "_InstallOnImport" for f in sys.meta_path)
        if (vllm_plugin.is_active() or armed) != self.plugin_on:
            raise pytest.UsageError(
                f"harmony-stream's vLLM plugin is {'armed' if armed else 'not armed'} "
                f"after load_general_plugins() with the plugin {'on' if self.plugin_on else 'off'}"
            )

    def check_active(self, when: str) -> None:
        from harmony_stream import vllm_plugin

        self.active = vllm_plugin.is_active()
        if self.active != self.plugin_on:
            raise pytest.UsageError(
                f"harmony-stream's vLLM plugin is {'active' if self.active else 'not active'} "
                f"{when} with the plugin {'on' if self.plugin_on else 'off'}"
            )

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            if self.mode in ("full", "cannot-run"):
                cannot_run = self.selection.find(self.selection.cannot_run, item.nodeid) is not None
                if cannot_run == (self.mode == "full"):
                    if self.mode == "cannot-run":  # still an entry in use
                        self.selection.find(self.selection.expected, item.nodeid)
                    dropped.append(item)
                    self.deselected_ids.append(item.nodeid)
                    continue
                if self.mode == "cannot-run":
                    keep.append(item)
                    continue
            entry = self.selection.entry(self.selection.expected, item.nodeid)
            if entry is not None:
                self.expected_ids.append(item.nodeid)
                if self.plugin_on:
                    # failing as listed (its assertions), not crashing otherwise
                    item.add_marker(
                        pytest.mark.xfail(
                            reason=f"expected difference: {self.selection.expected[entry]}",
                            raises=self.selection.raises[entry],
                            strict=True,
                        )
                    )
            keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
        # vLLM's test modules are imported: the serving modules with them
        self.check_active("once the tests are collected")
        if self.mode in ("full", "cannot-run"):
            stale = sorted(
                (set(self.selection.expected) | set(self.selection.cannot_run))
                - self.selection.used
            )
            if stale:
                raise pytest.UsageError(
                    "tests_vllm_upstream/expected.py: entries that match no collected test "
                    f"on vLLM {self.version}: " + ", ".join(stale)
                )

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from harmony_stream import vllm_plugin

        if vllm_plugin.is_active() != self.plugin_on:
            pytest.fail(f"harmony-stream's vLLM plugin active={vllm_plugin.is_active()} here")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if report.when == "setup" or nodeid not in self.outcomes:
            self.outcomes.setdefault(nodeid, "passed")
        outcome: str | None = None
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        if outcome is not None and self.outcomes[nodeid] == "passed":
            self.outcomes[nodeid] = outcome
            if report.failed and nodeid not in self.failures:
                self.failures[nodeid] = failure_kind(report.longreprtext)

    def pytest_sessionfinish(self) -> None:
        if not self.report_path:
            return
        data: dict[str, Any] = {
            "vllm": self.version,
            "plugin_active": self.active,
            "outcomes": self.outcomes,
            "failures": self.failures,
            "expected_differences": self.expected_ids,
            "deselected": self.deselected_ids,
        }
        Path(self.report_path).write_text(json.dumps(data, indent=1))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Load vLLM's plugins before vLLM's conftests and test modules import vLLM."""
    plugin = UpstreamPlugin()
    plugin.load_vllm_plugins()
    early_config.pluginmanager.register(plugin, "hs-vllm-upstream")
