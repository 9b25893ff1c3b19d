"""``python -m stream_checks FILE``: the strict checks on streams made elsewhere.

A suite that runs in a server's own virtualenv, whose openai-python is older
than the one this project's event contract is written against (SGLang 0.5.23
pins openai 2.8.0), writes its streams to FILE as JSON (``{"name": [event,
...], ...}``; each event as it was sent) and runs this with the project's
own virtualenv. Fields the envelope's response carries that openai-python does
not know (a server's own extensions) are removed first, as
``loose.strip_vllm_envelope_extensions`` does. It prints ``{"name": "what is
wrong", ...}`` as JSON (``{}``: every stream passed) and exits 0; 2 if FILE
cannot be read.
"""

from __future__ import annotations

import json
import sys

from .loose import strip_vllm_envelope_extensions
from .strict import validate_stream


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m stream_checks FILE", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            streams = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {argv[0]}: {e}", file=sys.stderr)
        return 2
    problems: dict[str, str] = {}
    for name, events in streams.items():
        try:
            validate_stream(strip_vllm_envelope_extensions(events))
        except AssertionError as e:
            problems[name] = str(e)
    print(json.dumps(problems))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
