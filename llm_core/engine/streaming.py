"""Streaming text out of byte-level tokens: emit only whole, valid UTF-8 characters, honour stop strings.

A byte-level BPE token is a byte string, not a character: "é" or an emoji can be split across two or more
tokens. Decoding each token on its own would print replacement characters mid-stream; instead the bytes are
accumulated in an incremental UTF-8 decoder that releases a character only once all its bytes have arrived
(invalid byte sequences become U+FFFD, exactly as a full `bytes.decode(errors="replace")` would).
`TextDecoder` chains that with the stop-string filter; `TextStream` iterates it over a stream of ids (the
Engine's text streams and the chat's both use it).
"""
from __future__ import annotations

import codecs
import threading
from typing import Callable, Iterator, Sequence


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


class TextDecoder:
    """Token ids in, safe text out: the one place that chains `Utf8Stream` and `StopStringFilter`.

    `feed(token_id)` returns the text now safe to emit (whole characters, nothing at or past a stop string);
    `stopped` turns True at a stop string; `finish()` releases what was held back at the end.
    """

    def __init__(self, decode_bytes: Callable[[list[int]], bytes], stops: Sequence[str] = ()) -> None:
        self._decode_bytes = decode_bytes
        self._utf8 = Utf8Stream()
        self._stops = StopStringFilter(stops)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def feed(self, token_id: int) -> str:
        return self._stops.feed(self._utf8.feed(self._decode_bytes([token_id])))

    def finish(self) -> str:
        return self._stops.feed(self._utf8.flush()) + self._stops.flush()


class TextStream:
    """Iterate the text pieces of a stream of token ids (a `TextDecoder` over it), recording the ids read.

    Iteration ends at a stop string (`stopped`), when the ids run out, or, checked after every id, when
    `cancel` is set (`cancelled`); the held-back tail is released in the last two cases. The token iterator
    is closed at the end, which stops the decoder behind it.
    """

    def __init__(self, tokens: Iterator[int], decode_bytes: Callable[[list[int]], bytes],
                 stops: Sequence[str] = (), cancel: threading.Event | None = None) -> None:
        self._tokens = tokens
        self._decoder = TextDecoder(decode_bytes, stops)
        self._cancel = cancel
        self.ids: list[int] = []
        self.cancelled = False

    @property
    def stopped(self) -> bool:
        return self._decoder.stopped

    def __iter__(self) -> Iterator[str]:
        try:
            for tok in self._tokens:
                self.ids.append(tok)
                piece = self._decoder.feed(tok)
                if piece:
                    yield piece
                if self._decoder.stopped:
                    return
                if self._cancel is not None and self._cancel.is_set():
                    self.cancelled = True
                    break
            tail = self._decoder.finish()
            if tail:
                yield tail
        finally:
            close = getattr(self._tokens, "close", None)
            if close is not None:
                close()
