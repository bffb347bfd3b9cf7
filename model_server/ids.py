"""Ids the request path makes: prediction-log row ids (UUIDv7) and request ids (UUIDv4).

Their random bits come from the kernel's CSPRNG (os.urandom), read 4 KiB at a time. Each
os.urandom call releases the GIL, and taking it back waits for whichever thread took it
meanwhile (the log writer): py-spy found the event loop waiting there in ~10% of its samples
of single-row requests, two calls a request. Buffered, the randomness is the same and the
system call comes once every ~170 requests (measured in 3 alternating pairs: 171-178 CPU us
a single-row request against 178-182, bench/README.md).
"""

from __future__ import annotations

import os
import threading
import time

# Bytes read from the kernel at a time.
CHUNK = 4096


class _Entropy:
    """os.urandom, buffered; thread-safe; emptied in a forked child (which would otherwise
    hand out the parent's bytes a second time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._buffer):
                self._buffer, self._at = os.urandom(max(CHUNK, n)), 0
            start = self._at
            self._at += n
            return self._buffer[start : self._at]

    def forget(self) -> None:
        self._lock = threading.Lock()  # a fork may have copied it held
        self._buffer, self._at = b"", 0


_ENTROPY = _Entropy()
os.register_at_fork(after_in_child=_ENTROPY.forget)


def new_ids(count: int) -> list[str]:
    """`count` new prediction ids: UUIDv7 strings (RFC 9562) sharing one timestamp and random
    part, the last 16 bits counting the instances. Time-ordered, so that the log's primary key
    grows at its end instead of at random places (a third of an insert's cost with UUID4),
    and built in ~10 us per 100 (uuid.uuid4() costs ~6 us each). 58 random bits per request
    and millisecond keep ids unique across requests and replicas."""
    if count > 0x10000:
        return new_ids(0x10000) + new_ids(count - 0x10000)
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(_ENTROPY.take(8), "big")
    rand_a = rand >> 52  # 12 bits
    rand_b = rand & ((1 << 46) - 1)  # 46 bits; then the 16-bit counter
    head = f"{millis >> 16:08x}-{millis & 0xFFFF:04x}-{0x7000 | rand_a:04x}-"
    tail = (0b10 << 62) | (rand_b << 16)  # RFC 9562 variant
    prefix = f"{head}{tail >> 48:04x}-{(tail >> 16) & 0xFFFFFFFF:08x}"
    return [f"{prefix}{i:04x}" for i in range(count)]


def new_request_id() -> str:
    """A random UUIDv4 string, as str(uuid.uuid4()) makes, for a request that brought no id:
    the version digit 4, the variant digit one of 8, 9, a, b (RFC 9562). Formatted from the
    hex digits in ~1.2 us; uuid.UUID's constructor and str take ~3.4 (timeit)."""
    h = _ENTROPY.take(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# The variant digit for each random digit: its two top bits set to 10.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
