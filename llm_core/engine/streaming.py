"""Streaming text out of byte-level tokens: emit only whole, valid UTF-8 characters, honour stop strings.

A byte-level BPE token is a byte string, not a character: "é" or an emoji can be split across two or more
tokens. Decoding each token on its own would print replacement characters mid-stream; instead the bytes are
accumulated in an incremental UTF-8 decoder that releases a character only once all its bytes have arrived
(invalid byte sequences become U+FFFD, exactly as a full `bytes.decode(errors="replace")` would).
"""
from __future__ import annotations

import codecs
from typing import Sequence


class Utf8Stream:
    """Feed bytes, get the complete characters decoded so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Characters still pending at the end (an incomplete sequence becomes U+FFFD)."""
        return self._decoder.decode(b"", final=True)


class StopStringFilter:
    """Pass text through until a stop string appears; hold back text that could be the start of one.

    `feed(text)` returns the text that is now safe to emit; `stopped` turns True when a stop string has
    been seen (the stop string and everything after it are never emitted); `flush()` releases the held-back
    tail at the end of generation.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buf = self._pending + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return buf[:cut]
        hold = 0  # longest suffix of buf that is a proper prefix of some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:n]):
                    hold = n
                    break
        self._pending = buf[len(buf) - hold :]
        return buf[: len(buf) - hold]

    def flush(self) -> str:
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
