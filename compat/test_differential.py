"""vfsd against redis-server, command for command (compat/differential.py).

Runs ``VFSD_DIFF_SEQUENCES`` (default 300) seeded random sequences, from seed
``VFSD_DIFF_FIRST_SEED`` (default 0), in batches, against Debian's
redis-server (started here with ``--databases 1``, as vfsd has one database, and ``--hz 500`` so that
its blocking timeouts fire within 2 ms rather than 100)
and a vfsd node, and requires identical replies and keyspace events except
for the differences documented in compat/DIFFERENCES.md. For a longer run::

    VFSD_DIFF_SEQUENCES=5000 python -m pytest compat/test_differential.py
    python -m compat.differential --count 5000          # the same, without pytest
    python -m compat.differential --seed 1234           # replay and print one sequence
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat.differential import Harness, Sequence
from compat.support import RedisServerProcess
from tests.conftest import VfsdProcess

SEQUENCES = int(os.environ.get("VFSD_DIFF_SEQUENCES", "300"))
FIRST_SEED = int(os.environ.get("VFSD_DIFF_FIRST_SEED", "0"))
BATCH = 25


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    if RedisServerProcess.binary() is None:
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server): the differential "
                    "test needs it")
    root: Path = tmp_path_factory.mktemp("differential")
    redis = RedisServerProcess(root / "redis", extra=["--databases", "1", "--hz", "500"]).start()
    vfsd = VfsdProcess(root / "vfsd-data").start()
    h = Harness(redis.port, vfsd.port)
    try:
        yield h
    finally:
        h.close()
        vfsd.stop()
        redis.stop()


@pytest.mark.parametrize("first", range(FIRST_SEED, FIRST_SEED + SEQUENCES, BATCH))
def test_sequences_match_redis(harness: Harness, first: int) -> None:
    commands = 0
    for seed in range(first, min(first + BATCH, FIRST_SEED + SEQUENCES)):
        commands += harness.run(Sequence(seed))  # raises Mismatch naming the seed and both replies
    assert commands > 0
