"""A full disk ends a scan with one clear line (how many points are safe where, and how to
finish), never a traceback or a crash, and never damages what was already written; free
space and ``--resume`` finish the scan.

Two ways: a real full disk (a small tmpfs in a private mount namespace, where the test may
create one; skipped otherwise, with the reason), and ``OSError(ENOSPC)`` injected at every
write site: the archive's journal (write and fsync), the CSV, the figure, the JASCO export
and the HDF5 file built at the end."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cplscope.cli.main import main
from cplscope.data.archive import Archive, build_hdf5
from cplscope.data.spectrum import Spectrum
from cplscope.plans.scan import scan as scan_plan
from cplscope.util.files import DiskFullError

from durability_helpers import (  # noqa: F401
    Recorder,
    archived_points,
    calibrated_home,
    sim,
)

CLI_SCAN = ["-q", "scan", "--sim", "--start", "430", "--stop", "460", "--step", "2",
            "--periods", "1000", "--dwell", "0.2", "--dark-dwell", "0.1", "--accumulations",
            "2"]


# --- a real full disk: a small tmpfs --------------------------------------------------------

INSIDE = textwrap.dedent('''
    """Run inside a private mount namespace: a 32-kB tmpfs at DIR, a scan that fills it,
    what is left, more space, the resume; prints one JSON report."""
    import json, os, subprocess, sys
    from pathlib import Path
    folder, scan = Path(sys.argv[1]), json.loads(sys.argv[2])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(folder)],
                   check=True)
    os.chdir(folder)
    cli = [sys.executable, "-m", "cplscope"]
    first = subprocess.run(cli + scan + ["--output", "r.csv", "--archive", "r.h5", "--plot",
                                         "r.png"], capture_output=True, text=True)
    from cplscope.data.archive import Archive
    report = {"rc": first.returncode, "stderr": first.stderr,
              "files": sorted(os.listdir(folder))}
    with Archive.open("r.h5") as arc:
        report["kept"] = [[p.settings.index, p.settings.accumulation, p.result.g_lum,
                           int(p.frames.counts.sum())] for p in arc]
        report["lost"] = arc.lost
    from cplscope.data.spectrum import Spectrum
    report["csv_rows"] = len(Spectrum.read_csv("r.csv")) if Path("r.csv").exists() else None
    png = Path("r.png")
    report["png_whole"] = png.read_bytes()[-8:-4] == b"IEND" if png.exists() else None
    subprocess.run(["mount", "-o", "remount,size=8m", str(folder)], check=True)  # freed
    second = subprocess.run(cli + ["-q", "scan", "--sim", "--resume", "r.h5", "--output",
                                   "r.csv", "--plot", "r.png"], capture_output=True, text=True)
    report.update(rc2=second.returncode, stderr2=second.stderr,
                  files2=sorted(os.listdir(folder)))
    with Archive.open("r.h5") as arc:
        report["final"] = [[p.settings.index, p.settings.accumulation, p.result.g_lum,
                            int(p.frames.counts.sum())] for p in arc]
        report["closed"] = arc.closed_cleanly
    report["csv_rows2"] = len(Spectrum.read_csv("r.csv"))
    print(json.dumps(report))
''')


def _private_tmpfs_or_skip(tmp_path: Path) -> list[str]:
    """The command prefix that runs a program in a private mount namespace where it may
    mount a tmpfs (as root, or as a user with user namespaces); skip when there is none."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's unshare (util-linux) to mount a small tmpfs")
    probe = tmp_path / "probe"
    probe.mkdir()
    for prefix in ([unshare, "--mount"], [unshare, "--user", "--map-root-user", "--mount"]):
        done = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs",
                               str(probe)], capture_output=True, text=True)
        if done.returncode == 0:
            return prefix
    pytest.skip(f"cannot mount a tmpfs in a private namespace here ({done.stderr.strip()})")


def test_a_full_tmpfs_ends_the_scan_with_one_line_and_resume_finishes_it(calibrated_home,
                                                                         tmp_path):
    prefix = _private_tmpfs_or_skip(tmp_path)
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run([*prefix, sys.executable, "-c", INSIDE, str(folder),
                           json.dumps(CLI_SCAN)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["rc"] == 1, r["stderr"]
    assert "Traceback" not in r["stderr"]
    errors = [ln for ln in r["stderr"].splitlines() if ln.startswith("cplscope scan:")]
    n = len(r["kept"])
    assert errors == [f"cplscope scan: disk full while writing {errors[0].split()[6]} {n} "
                      f"points are safe in r.h5.journal; free space and run `cplscope scan "
                      "--resume r.h5`"], r["stderr"]
    assert 0 < n < 32 and not r["lost"]
    # the warning came before the scan: the predicted archive did not fit
    assert "may need up to" in r["stderr"]
    # nothing half-written is left: the journal ends with the last complete point, the
    # CSV and the figure of the points so far are whole files or not there
    assert set(r["files"]) - {"r.csv", "r.png"} == {"r.h5.journal"}
    assert r["png_whole"] in (None, True)
    assert r["csv_rows"] is None or r["csv_rows"] <= 16
    # with space again, --resume finishes: every point once, the kept ones unchanged
    assert r["rc2"] == 0, r["stderr2"]
    assert r["files2"] == ["r.csv", "r.h5", "r.png"]
    final = {(i, a): (g, c) for i, a, g, c in r["final"]}
    assert len(r["final"]) == len(final) == 32 and r["closed"]
    assert all(final[(i, a)] == (g, c) for i, a, g, c in r["kept"])
    assert r["csv_rows2"] == 16


BUILD = textwrap.dedent('''
    """In a private mount namespace: a journal that fits on a tmpfs whose space then runs
    out for the HDF5 file built from it."""
    import json, os, shutil, subprocess, sys
    from pathlib import Path
    folder, journal = Path(sys.argv[1]), Path(sys.argv[2])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                   check=True)
    shutil.copy(journal, folder / "r.h5.journal")
    free = shutil.disk_usage(folder).free
    with open(folder / "ballast", "wb") as f:    # leave less than the HDF5 file needs
        f.write(b"x" * (free - 8192))
    from cplscope.data.archive import Archive, build_hdf5
    from cplscope.data.archive_hdf5 import run_helper
    from cplscope.util.files import DiskFullError
    out = {}
    for name, call in (
            ("checked", lambda: build_hdf5(folder / "r.h5.journal", folder / "r.h5")),
            ("helper", lambda: run_helper("build", folder / "r.h5.journal",
                                          folder / ".r.h5.building", timeout_s=60))):
        try:
            call()
            out[name] = "built"
        except DiskFullError as exc:
            out[name] = str(exc)
        out[name + "_files"] = sorted(os.listdir(folder))
    with Archive.open(folder / "r.h5") as arc:
        out["points"] = len(arc)
    print(json.dumps(out))
''')


def test_no_room_for_the_hdf5_file_keeps_the_journal(sim, tmp_path):
    prefix = _private_tmpfs_or_skip(tmp_path)
    journal = _killed_run_journal(sim, tmp_path)
    folder = tmp_path / "small-disk"
    folder.mkdir()
    done = subprocess.run([*prefix, sys.executable, "-c", BUILD, str(folder), str(journal)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout.strip().splitlines()[-1])
    # refused before the HDF5 library runs, and in the helper (a real ENOSPC there): the
    # journal stays, nothing half-built is left, the helper did not crash
    assert r["checked"].startswith("disk full while writing") and "r.h5" in r["checked"]
    assert r["helper"].startswith("disk full while writing")
    assert r["checked_files"] == r["helper_files"] == ["ballast", "r.h5.journal"]
    assert r["points"] == 3


def _killed_run_journal(inst, tmp_path: Path) -> Path:
    """The journal of a scan whose process died after its third point."""
    class Stop(BaseException):
        pass

    def stop_after_three(point, index, acc):
        if index == 2:
            raise Stop

    path = tmp_path / "killed" / "r.h5"
    path.parent.mkdir()
    import cplscope.data.archive as archive_module

    real = archive_module.build_hdf5
    archive_module.build_hdf5 = lambda *a: (_ for _ in ()).throw(Stop())   # dies at the end
    try:
        with pytest.raises(Stop):
            scan_plan(inst, 430, 446, 2, dwell_s=0.1, dark_dwell_s=0.1, archive=path,
                      callback=stop_after_three)
    finally:
        archive_module.build_hdf5 = real
    return path.with_name("r.h5.journal")


# --- ENOSPC injected at every write site ---------------------------------------------------

class Full:
    """``os.write``/``os.fsync`` that raise ENOSPC for files whose name matches ``pattern``,
    from the ``after``-th such call on (earlier calls go through)."""

    def __init__(self, monkeypatch, pattern: str, *, after: int = 0, call: str = "write"):
        self.pattern, self.after, self.calls = pattern, after, 0
        real = getattr(os, call)

        def faulty(fd, *args):
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                name = ""
            if Path(name).match(self.pattern):
                self.calls += 1
                if self.calls > self.after:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, *args)

        monkeypatch.setattr(os, call, faulty)


pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(),
                                reason="the ENOSPC injector finds files by /proc/self/fd")


@pytest.mark.parametrize("site, pattern, after, call", [
    # the header and the start records go in first, under a temporary name: then the
    # dark and the points
    ("journal write", "r.h5.journal", 4, "write"),   # dark, 3 points
    ("journal fsync", "r.h5.journal", 3, "fsync"),   # dark, 2 points
    ("csv", ".r.csv*.tmp", 2, "write"),
])
def test_enospc_mid_scan_keeps_every_completed_point(sim, tmp_path, monkeypatch, site,
                                                     pattern, after, call):
    csv, h5 = tmp_path / "r.csv", tmp_path / "r.h5"
    rec = Recorder()
    full = Full(monkeypatch, pattern, after=after, call=call)
    with pytest.raises(DiskFullError) as info:
        sim.scan(430, 446, 2, dwell_s=0.1, dark_dwell_s=0.1, output=csv, archive=h5,
                 callback=rec)
    assert full.calls > after
    monkeypatch.undo()
    kept = archived_points(h5)
    n = len(kept)
    # a journal fault leaves the journal; after a CSV fault the archive was still built
    what, where = (("r.csv", "r.h5") if site == "csv" else ("r.h5", "r.h5.journal"))
    assert str(info.value) == (f"disk full while writing {tmp_path / what}: {n} points are "
                               f"safe in {tmp_path / where}; free space and run "
                               f"`cplscope scan --resume {h5}`")
    # the journal holds the points completed before the disk filled (a CSV fault comes
    # after its point reached the journal), the CSV its last complete version
    assert sorted(kept)[: len(rec.done)] == sorted(rec.done)
    assert n == len(rec.done) + (1 if site == "csv" else 0)
    assert 2 <= n < 9
    if csv.exists():   # (the CSV may also have the point whose record did not fit)
        assert len(Spectrum.read_csv(csv)) <= n + 1
    assert sorted(p.name for p in tmp_path.iterdir()) in (["r.csv", where], [where])
    spec = sim.resume(h5, output=csv)
    assert len(spec) == 9
    final = archived_points(h5)
    assert sorted(final) == [(i, 0) for i in range(9)]
    assert all(final[k] == v for k, v in kept.items())


def test_enospc_for_the_figure_and_the_hdf5_file_at_the_end(sim, tmp_path, monkeypatch):
    from cplscope.plot.sink import PlotSink
    import matplotlib.figure

    def no_room(self, fname, *a, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    csv, h5, png = tmp_path / "r.csv", tmp_path / "r.h5", tmp_path / "r.png"
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_room)
    with pytest.raises(DiskFullError) as info:
        sim.scan(430, 438, 4, dwell_s=0.1, dark_dwell_s=0.1, output=csv, archive=h5,
                 sinks=[PlotSink(png)])
    monkeypatch.undo()
    assert str(info.value) == (f"disk full while writing {png}: 3 points are safe in {h5}; "
                               f"free space and run `cplscope scan --resume {h5}`")
    assert len(archived_points(h5)) == 3 and len(Spectrum.read_csv(csv)) == 3
    assert not png.exists()

    # no room for the HDF5 file: the journal keeps every point, the CSV is still written
    csv2, h52 = tmp_path / "s.csv", tmp_path / "s.h5"
    monkeypatch.setattr("cplscope.data.archive.free_bytes", lambda folder: 1000)
    with pytest.raises(DiskFullError) as info:
        sim.scan(430, 438, 4, dwell_s=0.1, dark_dwell_s=0.1, output=csv2, archive=h52)
    monkeypatch.undo()
    assert str(info.value) == (f"disk full while writing {h52}: 3 points are safe in "
                               f"{tmp_path / 's.h5.journal'}; free space and run `cplscope "
                               f"scan --resume {h52}`")
    assert not h52.exists() and len(Spectrum.read_csv(csv2)) == 3
    assert not list(tmp_path.glob(".s.h5*"))
    sim.resume(h52, output=csv2)            # nothing left to measure: it builds the file
    with Archive.open(h52) as arc:
        assert arc.source == "hdf5" and len(arc) == 3 and arc.closed_cleanly


def test_the_command_line_says_it_in_one_line(calibrated_home, tmp_path, monkeypatch, capfd):
    """The CLI: exit status 1, one line, no traceback, for the journal and the export."""
    monkeypatch.chdir(tmp_path)
    short = ["-q", "scan", "--sim", "--start", "430", "--stop", "434", "--step", "2",
             "--periods", "1000", "--dwell", "0.2", "--dark-dwell", "0.1"]
    Full(monkeypatch, "r.h5.journal", after=2)             # the dark, 1 point
    assert main([*short, "--output", "r.csv", "--archive", "r.h5"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines == ["cplscope scan: disk full while writing r.h5: 1 point is safe in "
                     "r.h5.journal; free space and run `cplscope scan --resume r.h5`"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    Full(monkeypatch, ".j.csv*.tmp")
    assert main([*short, "--output", "s.csv", "--archive", "s.h5", "--jasco", "j.csv"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "cplscope scan: disk full while writing j.csv: 3 points are safe in s.h5; free "
        "space and run `cplscope scan --resume s.h5`"]
    assert not list(tmp_path.glob(".j.csv*")) and not Path("j.csv").exists()
