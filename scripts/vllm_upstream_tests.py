"""vLLM's own Harmony unit tests, run with harmony-stream's vLLM plugin on.

    VLLM_VENV/bin/python scripts/vllm_upstream_tests.py [-- PYTEST_ARGS]

(``make test-vllm-upstream-0.33.0``.) Steps:

1. The tests of the vLLM release installed in that virtualenv, from the release's
   source distribution: fetched once with pip (``pip download`` by package name,
   which prepares the sdist's metadata: that needs setuptools-rust and
   setuptools-scm, installed into a throwaway directory), its ``tests/`` tree,
   ``pyproject.toml`` (pytest's settings) and ``requirements/test/`` extracted
   into ``~/.cache/harmony-stream/vllm-src-VERSION/``, with the pytest plugins
   vLLM's tests use (pytest-asyncio, pytest-mock, tblib; at the versions of the
   release's ``requirements/test/cpu.txt``) installed beside them. Made once,
   reused; nothing of it is committed.
2. The selected tests (``tests_vllm_upstream/expected.py``) with the plugin on
   (``HARMONY_STREAM_VLLM=1``, loaded by ``vllm.plugins.load_general_plugins()``,
   checked active before every test), offline (no Hugging Face Hub), with the
   vocabulary from ``TIKTOKEN_ENCODINGS_BASE`` (``make vocab``). Tests that cannot
   run here are deselected; expected differences are strict xfail.
3. The expected differences again with the plugin off: each must pass.

Exit status 0 only if everything selected passed, every expected difference
failed with the plugin on and passed with it off, and the list is not stale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXPECTED = REPO / "tests_vllm_upstream" / "expected.py"
SCRIPTS = REPO / "scripts"
# what is extracted from the sdist (below its top directory)
EXTRACT = ("tests/", "requirements/test/", "pyproject.toml")
# pytest plugins vLLM's tests use that the vLLM virtualenv does not have
TEST_DEPS = ("pytest-asyncio", "pytest-mock", "tblib")
# to prepare the sdist's metadata (imported by vLLM's setup.py)
BUILD_DEPS = ("setuptools-rust>=1.9", "setuptools-scm>=8")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def log(msg: str) -> None:
    print(f"[vllm-upstream] {msg}", flush=True)


def vllm_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def pinned(requirements: Path, names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each name, from a pip-compiled requirements file."""
    pins: dict[str, str] = {}
    for line in requirements.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"{requirements}: no pin for {', '.join(missing)}")
    return [f"{n}=={pins[n]}" for n in names]


def pip(python: str, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [python, "-m", "pip", *args, "-q", "--disable-pip-version-check"], check=True, env=env
    )


def is_complete(dest: Path) -> bool:
    """A cached copy made by this script, with what it extracts (written last)."""
    stamp = dest / "source.json"
    return stamp.is_file() and json.loads(stamp.read_text()).get("extract") == list(EXTRACT)


def fetch_source(python: str, version: str, cache_root: Path) -> Path:
    """The release's tests, extracted once into ``cache_root/vllm-src-VERSION``."""
    dest = cache_root / f"vllm-src-{version}"
    if is_complete(dest):
        return dest
    log(f"fetching vLLM {version}'s source distribution with pip (once) into {dest}")
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"vllm-src-{version}.", dir=cache_root) as tmp:
        work = Path(tmp)
        build_tools = work / "build-tools"
        pip(python, "install", "--target", str(build_tools), *BUILD_DEPS)
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(build_tools),
            VLLM_TARGET_DEVICE="empty",
            # else the metadata says VERSION+empty and pip refuses it
            VLLM_SKIP_VERSION_SUFFIX="1",
        )
        download = work / "download"
        pip(
            python,
            "download",
            "--no-deps",
            "--no-binary",
            "vllm",
            "--no-build-isolation",
            f"vllm=={version}",
            "-d",
            str(download),
            env=env,
        )
        (sdist,) = download.glob("vllm-*.tar.gz")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        out = work / "src"
        with tarfile.open(sdist) as tar:
            members = []
            for member in tar.getmembers():
                _top, _, rest = member.name.partition("/")
                if not rest.startswith(EXTRACT) or not (member.isfile() or member.isdir()):
                    continue
                member.name = rest
                members.append(member)
            tar.extractall(out, members=members, filter="data")
        reqs = out / "requirements" / "test" / "cpu.txt"
        pip(python, "install", "--no-deps", "--target", str(out / "deps"), *pinned(reqs, TEST_DEPS))
        (out / "source.json").write_text(
            json.dumps({"sdist": sdist.name, "sha256": digest, "extract": list(EXTRACT)}, indent=1)
        )
        if is_complete(dest):  # made meanwhile by another run
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        out.rename(dest)
    return dest


def run_pytest(
    python: str,
    src: Path,
    version: str,
    vocab: Path,
    *,
    plugin_on: bool,
    mode: str,
    targets: list[str],
    extra: list[str],
    report: Path,
) -> int:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env.pop("HARMONY_STREAM_VLLM", None)
    if plugin_on:
        env["HARMONY_STREAM_VLLM"] = "1"
    env.update(
        TIKTOKEN_ENCODINGS_BASE=str(vocab),
        PYTHONPATH=os.pathsep.join([str(src / "deps"), str(SCRIPTS)]),
        HS_UPSTREAM_EXPECTED=str(EXPECTED),
        HS_UPSTREAM_VLLM_VERSION=version,
        HS_UPSTREAM_PLUGIN="on" if plugin_on else "off",
        HS_UPSTREAM_MODE=mode,
        HS_UPSTREAM_REPORT=str(report),
    )
    cmd = [
        python,
        "-m",
        "pytest",
        "-p",
        "vllm_upstream_pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEX",
        "--rootdir",
        str(src),
        *extra,
        *targets,
    ]
    return subprocess.run(cmd, cwd=src, env=env).returncode


def read_report(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"outcomes": {}, "expected_differences": [], "deselected": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def check_deselected(args: argparse.Namespace, src: Path, version: str, paths: list[str]) -> int:
    """The tests listed as unable to run here, plugin off: none may pass, and each
    failure must be for want of the Hugging Face Hub or a GPU."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vllm-upstream-") as tmp:
        report_path = Path(tmp) / "cannot-run.json"
        log(f"vLLM {version}: the tests listed as unable to run here, plugin off")
        run_pytest(
            args.python,
            src,
            version,
            args.vocab,
            plugin_on=False,
            mode="cannot-run",
            targets=paths,
            extra=args.pytest_args,
            report=report_path,
        )
        report = read_report(report_path)
        if args.keep_reports:
            args.keep_reports.mkdir(parents=True, exist_ok=True)
            shutil.copy(report_path, args.keep_reports / f"{version}-off-cannot-run.json")
    kinds: Counter[str] = Counter()
    problems = []
    for test, outcome in report["outcomes"].items():
        if outcome in ("failed", "error"):
            kind = report["failures"].get(test, "")
            kinds[kind] += 1
            if not kind.startswith("needs "):
                problems.append(f"{test}: {kind}")
        elif outcome in ("skipped", "xfailed"):
            kinds[f"{outcome} by vLLM's own marks"] += 1
        else:
            problems.append(f"{test}: {outcome} here")
    summary = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    status = "OK" if report["outcomes"] and not problems else "FAILED"
    print(
        f"===== vLLM {version}, tests listed as unable to run here: {summary} "
        f"in {time.monotonic() - start:.1f}s ({status}) =====",
        flush=True,
    )
    for problem in problems:
        print(f"  {problem}", flush=True)
    return 0 if status == "OK" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=sys.executable, help="the vLLM virtualenv's python (default: this one)"
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "harmony-stream")
    parser.add_argument("--vocab", type=Path, default=REPO / ".cache" / "tiktoken")
    parser.add_argument(
        "--plugin-off",
        action="store_true",
        help="run the selection with the plugin off instead (a baseline, not strict)",
    )
    parser.add_argument(
        "--keep-reports", type=Path, help="copy the JSON reports (outcome of every test) here"
    )
    parser.add_argument(
        "--fetch-only", action="store_true", help="fetch and cache the tests, run nothing"
    )
    parser.add_argument(
        "--check-deselected",
        action="store_true",
        help="run only the tests listed as unable to run here, plugin off: each must fail "
        "for want of the Hugging Face Hub or a GPU (or be skipped by vLLM itself)",
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)

    if not (args.vocab / "o200k_base.tiktoken").is_file():
        raise SystemExit(f"{args.vocab}/o200k_base.tiktoken is missing: run `make vocab`")
    version = vllm_version(args.python)
    src = fetch_source(args.python, version, args.cache)
    if args.fetch_only:
        log(f"vLLM {version}'s tests: {src}")
        return 0
    sys.path.insert(0, str(SCRIPTS))
    from vllm_upstream_pytest import load_expected

    paths = list(load_expected(EXPECTED).PATHS)
    if args.check_deselected:
        return check_deselected(args, src, version, paths)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vllm-upstream-") as tmp:
        on_report = Path(tmp) / "selection.json"
        plugin_on = not args.plugin_off
        label = "on" if plugin_on else "off"
        log(f"vLLM {version}: {len(paths)} paths of vLLM's tests, plugin {label}")
        rc_on = run_pytest(
            args.python,
            src,
            version,
            args.vocab,
            plugin_on=plugin_on,
            mode="full",
            targets=paths,
            extra=args.pytest_args,
            report=on_report,
        )
        on = read_report(on_report)
        expected_ids: list[str] = on["expected_differences"]
        off: dict[str, Any] = {"outcomes": {}}
        rc_off = 0
        if plugin_on and expected_ids:
            log(f"the {len(expected_ids)} expected differences with the plugin off: each must pass")
            off_report = Path(tmp) / "expected-off.json"
            rc_off = run_pytest(
                args.python,
                src,
                version,
                args.vocab,
                plugin_on=False,
                mode="only",
                targets=expected_ids,
                extra=[],
                report=off_report,
            )
            off = read_report(off_report)
        if args.keep_reports:
            args.keep_reports.mkdir(parents=True, exist_ok=True)
            for report in Path(tmp).glob("*.json"):
                shutil.copy(report, args.keep_reports / f"{version}-{label}-{report.name}")
    elapsed = time.monotonic() - start

    counts = Counter(on["outcomes"].values())
    problems: list[str] = []
    if rc_on != 0:
        problems.append(f"pytest exit status {rc_on} (plugin {label})")
    xfailed_ours = sum(1 for t in expected_ids if on["outcomes"].get(t) == "xfailed")
    xfailed_vllm = counts["xfailed"] - xfailed_ours
    off_passed = sum(1 for t in expected_ids if off["outcomes"].get(t) == "passed")
    if plugin_on and off_passed != len(expected_ids):
        bad = [t for t in expected_ids if off["outcomes"].get(t) != "passed"]
        problems.append("expected differences failing with the plugin off: " + ", ".join(bad))
        if rc_off == 0:
            rc_off = 1
    parts = [f"{counts['passed']} passed"]
    for key in ("failed", "error", "xpassed", "skipped"):
        if counts[key]:
            parts.append(f"{counts[key]} {key}")
    if plugin_on:
        parts.append(
            f"{xfailed_ours} xfailed (expected differences; {off_passed} pass with the plugin off)"
        )
    if xfailed_vllm:
        parts.append(f"{xfailed_vllm} xfailed (vLLM's own marks)")
    parts.append(f"{len(on['deselected'])} deselected (cannot run here)")
    status = "FAILED" if problems or rc_off else "OK"
    print(
        f"===== vLLM {version} upstream Harmony tests, plugin {label}: "
        f"{', '.join(parts)} in {elapsed:.1f}s ({status}) =====",
        flush=True,
    )
    for problem in problems:
        print(f"  {problem}", flush=True)
    return 0 if status == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
