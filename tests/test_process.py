"""igkit.process: a process igkit owns keeps the memory it frees, and no other process does.

Each case runs in a fresh interpreter, since the allocator's settings belong to the process. The
property checked is the one that matters: after a 64 MiB array is written and freed, are its
pages still resident (kept for the next batch) or handed back to the system?
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Prints what keep_freed_memory answered (if asked) and how many MiB of a freed 64 MiB block
# the process still holds.
_PROBE = """
import json, os, sys
import numpy as np
{setup}
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
for _ in range(3):  # glibc's own mmap threshold rises with the largest block freed
    block = np.ones(64 << 20, dtype=np.uint8)
    before = resident()
    del block
    after = resident()
print(json.dumps({{"answer": answer, "kept_mib": (after - before + (64 << 20)) / (1 << 20)}}))
"""


def _probe(setup: str, **env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("MALLOC_") and k not in ("IGKIT_MALLOC", "GLIBC_TUNABLES")}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=setup)], env=environment,
        capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


_ASK = "import igkit\nanswer = igkit.keep_freed_memory()"


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_a_process_that_asks_keeps_what_it_frees_and_one_that_does_not_gives_it_back() -> None:
    asked = _probe(_ASK)
    assert asked["answer"] == "kept"
    assert asked["kept_mib"] > 60  # the whole block stays resident for the next batch

    # import igkit alone leaves the allocator of the user's process as glibc set it.
    untouched = _probe("import igkit\nanswer = None")
    assert untouched["kept_mib"] < 4


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_users_choice_stands() -> None:
    off = _probe(_ASK, IGKIT_MALLOC="system")
    assert off["answer"] == "off" and off["kept_mib"] < 4
    # glibc's own variables: igkit does not override them (here: a small trim threshold, which
    # also fixes glibc's mmap threshold at its default, so the block is unmapped).
    user = _probe(_ASK, MALLOC_TRIM_THRESHOLD_="131072")
    assert user["answer"] == "user" and user["kept_mib"] < 4
    tunable = _probe(_ASK, GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert tunable["answer"] == "user" and tunable["kept_mib"] < 4


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_igkit_command_keeps_freed_memory() -> None:
    # A usage mistake still goes through main(), which sets the process up first.
    command = _probe(
        "from igkit import cli, process\n"
        "assert cli.main(['summarize']) == 2\n"
        "answer = process._done"
    )
    assert command["answer"] == "kept" and command["kept_mib"] > 60


def test_the_answer_is_one_of_the_documented_ones() -> None:
    answer = _probe(_ASK)["answer"]
    assert answer in {"kept", "user", "off", "unsupported"}
    assert (answer == "kept") == GLIBC
