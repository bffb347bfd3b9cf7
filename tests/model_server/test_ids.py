"""The ids of the request path (model_server/ids.py): format, uniqueness, buffered randomness."""

from __future__ import annotations

import os
import time
import uuid

from model_server import ids
from model_server.ids import CHUNK, new_ids, new_request_id


def test_prediction_ids_are_unique_time_ordered_uuid7() -> None:
    first = new_ids(3)
    time.sleep(0.002)
    second = new_ids(60_000)
    made = first + second + new_ids(70_000)  # past the 16-bit counter: a second prefix
    assert len(set(made)) == len(made) == 130_003
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made)
    assert first == sorted(first) and second == sorted(second)
    assert first[-1] < second[0]  # a later millisecond sorts after
    assert new_ids(0) == []


def test_request_ids_are_uuid4_strings_as_uuid_makes_them() -> None:
    made = [new_request_id() for _ in range(3 * CHUNK // 16)]  # across several refills
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower case, hyphens where uuid puts them


def test_random_bits_cover_the_whole_range() -> None:
    # Every hex digit of the random part takes all 16 values: no bit stuck by the masking.
    made = [new_request_id().replace("-", "") for _ in range(2000)]
    random_positions = [p for p in range(32) if p not in (12, 16)]  # version, variant digits
    for p in random_positions:
        assert len({text[p] for text in made}) == 16, p
    assert {text[16] for text in made} == set("89ab")


def test_a_forked_child_does_not_repeat_the_parents_bytes() -> None:
    ids._ENTROPY.take(1)  # the buffer holds bytes the parent has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        try:
            os.write(write, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child != new_request_id()  # the parent's next id, from the same buffer position
