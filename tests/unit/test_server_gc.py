"""The serving process's garbage-collector settings (in a child process: they are process-wide)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from tollgate.server import GC_GEN0_THRESHOLD, tune_gc
before = gc.get_threshold()
tune_gc()
after = gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()  # start-up objects left the collected generations
assert after == (GC_GEN0_THRESHOLD, before[1], before[2]), (before, after)
cycle = []
cycle.append(cycle)
del cycle
assert gc.collect() >= 1  # cycles made after start-up are still collected
print("ok")
"""


def test_tune_gc_freezes_start_up_objects_and_keeps_collecting_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
