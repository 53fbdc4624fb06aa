"""runtime.process.tune_gc: the collector settings a serving process runs with (runtime/process.py says why)."""

from __future__ import annotations

import gc

from runtime import process


def test_a_serving_process_freezes_its_start_up_heap_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        process.tune_gc()
        assert gc.get_threshold() == process.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what start-up made is never scanned again
        young, middle, full = process.GC_THRESHOLDS
        assert young > before[0] and full > before[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
