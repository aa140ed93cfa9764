"""What Bluesky and Tiled cost a scan: the same twin scan (430–470 nm in 2-nm steps, 2 s per
point, a 2-s dark) run by the engine directly, as a Bluesky plan through a RunEngine (with the
project's CSV sink as a RunEngine callback), and with its run written to a local Tiled server;
wall seconds, best of 3, and the ratio to the direct run measured in the same process. Also
the wall time to start the local Tiled server (``cplscope serve``).

    pip install '.[bluesky]' && python bench/bench_bluesky.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from _timing import best_time

GRID = (430.0, 470.0, 2.0)
OPTIONS = dict(dwell_s=2.0, dark_dwell_s=2.0)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cplscope-bench-"))
    os.environ["CPLSCOPE_HOME"] = str(home)

    import cplscope
    from bluesky import RunEngine
    from ophyd_async.core import init_devices

    from cplscope.bluesky import CplScope
    from cplscope.bluesky.documents import ProjectCallback
    from cplscope.bluesky.plans import cpl_scan
    from cplscope.bluesky.tiled import TiledSink, serve
    from cplscope.data.sinks import CsvSink
    from cplscope.plans.calibrate import calibrate_simulated

    calibrate_simulated(seed=0, dwell_s=5.0)
    inst = cplscope.connect("sim", sample="R-Cs4PbBr6", seed=1)
    inst.prepare()

    def direct() -> None:
        inst.scan(*GRID, output=home / "direct.csv", sample="R-Cs4PbBr6", **OPTIONS)

    RE = RunEngine()
    RE.subscribe(ProjectCallback(CsvSink(home / "re.csv")))
    with init_devices():
        cpl = CplScope("sim", sample="R-Cs4PbBr6", seed=1)

    def plan() -> None:
        RE(cpl_scan(cpl, *GRID, **OPTIONS))

    t = time.perf_counter()
    server = serve(home / "catalog", port=0)
    start_s = time.perf_counter() - t

    scan_s: list[float] = []

    def tiled() -> None:
        sink = TiledSink(server.uri, backup=home / "backup")
        t0 = time.perf_counter()
        inst.scan(*GRID, output=home / "tiled.csv", sample="R-Cs4PbBr6", sinks=[sink],
                  **OPTIONS)
        scan_s.append(time.perf_counter() - t0)      # the scan does not wait for Tiled
        sink.close(timeout=300)
        assert sink.failed is None, sink.failed

    try:
        rows = [("engine, direct (inst.scan)", best_time(direct, 3)),
                ("Bluesky plan (RE(cpl_scan)) + CSV callback", best_time(plan, 3)),
                ("engine + run written to Tiled (until stored)", best_time(tiled, 3))]
        rows.insert(2, ("engine + Tiled sink (until the scan returns)", min(scan_s)))
    finally:
        server.close()
        cpl.close()
        inst.close()
    base = rows[0][1]
    points = int(round((GRID[1] - GRID[0]) / GRID[2])) + 1
    print(f"twin scan of {points} points, {OPTIONS['dwell_s']:g} s each (instrument time "
          f"{points * OPTIONS['dwell_s'] + OPTIONS['dark_dwell_s']:g} s)")
    print(f"{'run':46s} {'wall s':>8s} {'ratio':>6s}")
    for name, s in rows:
        print(f"{name:46s} {s:8.2f} {s / base:6.2f}")
    print(f"start of the local Tiled server (cplscope serve): {start_s:.1f} s")


if __name__ == "__main__":
    main()
