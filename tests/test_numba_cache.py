"""The kernels' disk cache is valid only for the package's sources as they are."""

from __future__ import annotations

from simulator import _numba
from simulator._kernels import simulate_host


def test_a_kernels_cache_is_stamped_with_every_source_file_of_the_package():
    # a kernel freezes constants and inlines functions of other modules (catalogue, _rng): a change
    # there alone must not leave its cached build in use
    stamp = simulate_host._cache._impl.locator.get_source_stamp()
    assert stamp == _numba.package_stamp()
    names = {name for name, _, _ in stamp}
    assert {"_kernels.py", "catalogue.py", "_rng.py", "anomalies/cpu_spike.py"} <= names


def test_kernels_of_other_code_keep_numbas_own_cache_check(tmp_path):
    import numba

    source = tmp_path / "other_kernel.py"
    source.write_text("def f(x):\n    return x + 1\n")
    namespace: dict = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    kernel = numba.njit(cache=True)(namespace["f"])
    assert kernel(1) == 2
    assert not type(kernel._cache._impl.locator).__name__.startswith("Package")
