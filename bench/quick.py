"""`make bench-quick`: every benchmark on a tenth of the context (~70 MB), 3 rounds, ratios only.

For checking that a change did not make sealer slower than its peers; the figures that prove
the targets come from `make bench` (at this size Python's start-up weighs several times more,
so these ratios are not the targets' ratios). Writes nothing to bench/results/.
"""

from __future__ import annotations

import os
import time

from bench import run_build, run_delivery, run_registry


def main() -> None:
    started = time.perf_counter()
    parts = {"build": run_build.main, "registry": run_registry.main}
    if os.geteuid() == 0:  # the delivery benchmark makes network namespaces and sshd hosts
        parts["delivery"] = run_delivery.main
    for name, run in parts.items():
        checks = run(quick=True)
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in checks.items()), flush=True)
    print(f"bench-quick: {time.perf_counter() - started:.0f} s (medians of 3 rounds, a tenth of the context)")


if __name__ == "__main__":
    main()
