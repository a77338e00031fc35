"""JSON encoding rate and size of the training samples, to compare two checkouts side by side.

    cd <checkout> && PYTHONPATH=$PWD python benchmarks/json_rate.py NAME

Generates 20,000 samples (seed 1) and prints bytes per sample and the best of 5 encodings in values/s,
counting 18 values a sample for the seed's schema, or 30 plus the context and history values where
the samples carry them. Run it in both checkouts, interleaved, on the same machine.
"""

from __future__ import annotations

import sys
import time

import simulator
from simulator import export


def _takes_windows() -> bool:
    """Whether this checkout's `_encoded_chunks` takes the window arrays (before they were read per chunk)."""
    import inspect
    return "windows" in inspect.signature(export._encoded_chunks).parameters


def main(name: str) -> None:
    result = simulator.generate_samples(20000, seed=1)
    frame = export.training_frame(result.samples)
    windows = export.window_arrays(result.samples) if hasattr(export, "window_arrays") else None
    per_sample = 18 if windows is None else 30 + windows.fine[0].size + windows.coarse[0].size
    args = (frame,) if windows is None else (frame, windows if _takes_windows() else result.samples)
    size = sum(len(c) for c in export._encoded_chunks(*args))
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        sum(len(c) for c in export._encoded_chunks(*args))
        best = min(best, time.perf_counter() - started)
    print(f"{name}: {size / 20000:.0f} B/sample, encode {20000 * per_sample / best / 1e6:.1f} M values/s, "
          f"{size / best / 1e6:.0f} MB/s, best {best:.3f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "this checkout")
