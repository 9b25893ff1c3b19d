"""What benches/test_instructions.py counts: N single-token steps on one ResponseStream.

    python benches/instructions_probe.py feed|feed_sse N

One reasoning message of N ordinary tokens, fed one token per call (the way a
serving loop with one token per engine step calls the engine), then `finish`.
"""

from __future__ import annotations

import sys

import harmony_stream

BODY = (976, 8065, 19361, 68347, 65613, 1072, 290, 29082)


def main() -> None:
    method, n = sys.argv[1], int(sys.argv[2])
    vocab = harmony_stream.Vocab.load()
    tokens = [200005, 35644, 200008] + [BODY[i % len(BODY)] for i in range(n)]
    stream = harmony_stream.ResponseStream(vocab, model="m")
    step = getattr(stream, method)
    stream.start()
    for token in tokens:
        step([token])
    stream.finish("stop")


if __name__ == "__main__":
    main()
