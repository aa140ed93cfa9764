"""The HDF5 archive is self-describing (docs/data-files.md, "The NeXus entry"): every group
has its NX_class, every numeric dataset its units, a generic NeXus reader (nexusformat) finds
the default plot (g_lum against wavelength for CPL, ΔA for CD) and xarray opens the tables
with named dimensions. An archive of the previous format (version 2, a committed file
written by cplscope before the NeXus entry) still reprocesses and resumes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.data.spectrum import Spectrum

DATA = Path(__file__).parent / "data"
#: written by cplscope at 1d8d709 (format version 2): `scan --sim --sample R-Cs4PbBr6
#: --seed 5 --start 440 --stop 452 --step 4 --periods 1000 --dwell 0.5 --dark-dwell 0.2
#: --bins 8` with the calibration in archive-v2-home/, interrupted (Ctrl-C) after 2 of its
#: 4 points; archive-v2.csv is that run's CSV, archive-v2-resumed.csv the CSV of its
#: `--resume` by this cplscope (1d8d709's resume gave the same two kept rows; its two new
#: points differed in the last digits, since the twin's timeline moved when HOME stopped
#: blocking the firmware's main loop, and again when SET_LIMITS's reply grew by
#: max_high_fraction: the simulated USB link's time goes by the bytes it carries)
OLD_ARCHIVE = DATA / "archive-v2.h5"


def nexus_problems(path: Path) -> list[str]:
    """Every group without an NX_class and every numeric dataset without units."""
    problems: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group) and not obj.attrs.get("NX_class"):
            problems.append(f"group /{name} has no NX_class")
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "iufc" and \
                "units" not in obj.attrs:
            problems.append(f"dataset /{name} has no units")

    with h5py.File(path, "r") as f:
        if f.attrs.get("NX_class") != "NXroot":
            problems.append("the root has no NX_class NXroot")
        f.visititems(visit)
    return problems


def test_every_group_has_an_nx_class_and_every_numeric_dataset_units(nexus_runs, tmp_path):
    for name in ("run.h5", "cd.h5"):
        assert nexus_problems(nexus_runs / name) == [], name
    # the check finds what is missing: a doctored copy, and the previous format
    copy = tmp_path / "copy.h5"
    shutil.copy(nexus_runs / "run.h5", copy)
    with h5py.File(copy, "r+") as f:
        del f["entry/data/g_lum"].attrs["units"]
        del f["entry/instrument/pem"].attrs["NX_class"]
    assert sorted(nexus_problems(copy)) == ["dataset /entry/data/g_lum has no units",
                                            "group /entry/instrument/pem has no NX_class"]
    old = nexus_problems(OLD_ARCHIVE)
    assert "the root has no NX_class NXroot" in old and "group /frames has no NX_class" in old


def test_a_generic_nexus_reader_plots_g_lum_against_wavelength(nexus_runs):
    from nexusformat.nexus import nxload

    spec = Spectrum.read_csv(nexus_runs / "run.csv")
    root = nxload(str(nexus_runs / "run.h5"))
    try:
        assert root.nxclass == "NXroot" and root.entry.nxclass == "NXentry"
        assert str(root.entry.experiment_type) == "circularly polarized luminescence"
        plot = root.plottable_data
        assert plot.nxpath == "/entry/data" and plot.nxclass == "NXdata"
        assert plot.nxsignal.nxname == "g_lum" and plot.nxsignal.attrs["units"] == "1"
        [axis] = plot.nxaxes
        assert axis.nxname == "wavelength" and axis.attrs["units"] == "nm"
        assert plot.nxerrors.nxname == "g_lum_errors"
        # the plot is the run's spectrum, as its CSV holds it
        np.testing.assert_array_equal(axis.nxdata, spec.wavelength_nm)
        np.testing.assert_array_equal(plot.nxsignal.nxdata, spec.g_lum)
        np.testing.assert_array_equal(plot.nxerrors.nxdata, spec.sigma_g)
        inst = root.entry.instrument
        assert inst.pem.nxclass == "NXwaveplate" and inst.pem.peak_retardation.attrs[
            "units"] == "rad"
        assert inst.monochromator.nxclass == "NXmonochromator"
        assert inst.detector.nxclass == "NXdetector"
        assert root.entry.sample.nxclass == "NXsample"
        assert str(root.entry.sample.name) == "R-Cs4PbBr6"
        assert inst.detector.data.shape == root.frames.counts.shape
    finally:
        root.nxfile.close()


def test_a_cd_archive_plots_delta_a_against_wavelength(nexus_runs):
    from nexusformat.nexus import nxload

    spec = CDSpectrum.read_csv(nexus_runs / "cd.csv")
    root = nxload(str(nexus_runs / "cd.h5"))
    try:
        assert str(root.entry.experiment_type) == "circular dichroism"
        plot = root.plottable_data
        assert plot.nxsignal.nxname == "delta_a" and plot.nxerrors.nxname == "delta_a_errors"
        assert plot.nxaxes[0].nxname == "wavelength"
        np.testing.assert_array_equal(plot.nxsignal.nxdata, spec.delta_a)
        np.testing.assert_array_equal(plot.ellipticity.nxdata, spec.ellipticity_mdeg)
        assert plot.ellipticity.attrs["units"] == "mdeg"
    finally:
        root.nxfile.close()


def test_silx_finds_a_valid_default_curve_with_its_errors(nexus_runs):
    """A second generic reader (silx, as its viewer does): the default NXdata is a valid
    curve of the signal with error bars against wavelength in nm."""
    nxdata = pytest.importorskip("silx.io.nxdata")
    for name, signal in (("run.h5", "g_lum"), ("cd.h5", "delta_a")):
        with h5py.File(nexus_runs / name, "r") as f:
            plot = nxdata.get_default(f)
            assert plot is not None and plot.group.name == "/entry/data", name
            assert plot.is_curve and plot.signal_name == signal and plot.errors is not None
            assert plot.axes[0].name == "/entry/data/wavelength"
            assert plot.axes[0].attrs["units"] == "nm"
            assert nxdata.is_valid_nxdata(f["entry/points"])


def test_xarray_opens_the_spectrum_and_the_points_with_named_dimensions(nexus_runs):
    xr = pytest.importorskip("xarray")
    spec = Spectrum.read_csv(nexus_runs / "run.csv")
    path = nexus_runs / "run.h5"
    with xr.open_dataset(path, group="entry/data", engine="h5netcdf") as ds:
        assert ds.g_lum.dims == ("wavelength",) and "wavelength" in ds.indexes
        assert ds.wavelength.attrs["units"] == "nm" and ds.dwell.attrs["units"] == "s"
        assert ds.dwell.dtype == np.float64           # seconds stay numbers
        np.testing.assert_array_equal(ds.g_lum.sel(wavelength=444.0).item(),
                                      spec.g_lum[spec.wavelength_nm == 444.0][0])
        assert list(ds.flags.values) == [";".join(p.flags) for p in spec]
    with xr.open_dataset(path, group="entry/points", engine="h5netcdf") as pts, \
            Archive.open(path) as arc:
        assert pts.g_lum.dims == ("point",) and len(pts.point) == len(arc) == 6
        assert {"wavelength", "accumulation", "index"} <= set(pts.coords)
        np.testing.assert_array_equal(pts.g_lum.values, [p.result.g_lum for p in arc])
        np.testing.assert_array_equal(pts.accumulation.values,
                                      [p.settings.accumulation for p in arc])
        assert sorted(set(pts.accumulation.values.tolist())) == [0, 1]


@pytest.mark.filterwarnings("error")      # xarray warns of unnamed (phony) dimensions
def test_every_group_opens_in_xarray_with_named_dimensions(nexus_runs):
    xr = pytest.importorskip("xarray")
    for name in ("run.h5", "cd.h5"):
        path = nexus_runs / name
        with h5py.File(path, "r") as f:
            groups = [None]
            f.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) else None)
            n_frames, n_bins = f["frames/counts"].shape
        seen = set()
        for group in groups:
            with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
                assert not [d for d in ds.sizes if str(d).startswith("phony")], group
                seen |= set(ds.sizes)
        assert {"point", "dark", "bin", "frame", "wavelength"} <= seen
        with xr.open_dataset(path, group="entry/instrument/detector", engine="h5netcdf") as d:
            assert d.data.dims == ("frame", "bin") and d.data.shape == (n_frames, n_bins)
            assert d.count_time.dims == ("point",) and d.count_time.attrs["units"] == "s"


def test_the_archive_still_reads_and_reprocesses_as_before(nexus_runs, tmp_path):
    out = tmp_path / "again.csv"
    assert main(["-q", "reprocess", str(nexus_runs / "run.h5"), "--output", str(out)]) == 0
    assert _rows(out) == _rows(nexus_runs / "run.csv")
    with Archive.open(nexus_runs / "run.h5") as arc:
        assert arc.version == 4 and len(arc) == 6 and arc.source == "hdf5"


def _rows(csv: Path) -> list[str]:
    """The data rows of a spectrum CSV (no header, no metadata)."""
    return [line for line in csv.read_text().splitlines()[1:] if not line.startswith("#")]


@pytest.fixture
def old_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(DATA / "archive-v2-home", home)
    monkeypatch.setenv("CPLSCOPE_HOME", str(home))
    return home


def test_an_archive_of_the_previous_format_reprocesses(old_home, tmp_path):
    with Archive.open(OLD_ARCHIVE) as arc:
        assert arc.version == 2 and len(arc) == 2 and arc.exit_status == "abort"
    out = tmp_path / "re.csv"
    assert main(["-q", "reprocess", str(OLD_ARCHIVE), "--output", str(out)]) == 0
    assert _rows(out) == _rows(DATA / "archive-v2.csv")


def test_an_archive_of_the_previous_format_resumes_and_becomes_nexus(old_home, tmp_path):
    h5 = tmp_path / "run.h5"
    shutil.copy(OLD_ARCHIVE, h5)
    with Archive.open(h5) as arc:
        before = [_fingerprint(p) for p in arc]
    csv = tmp_path / "run.csv"
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(csv)]) == 0
    # the kept points as the interrupted run wrote them, and the CSV this cplscope's
    # --resume of the same archive gives
    assert _rows(csv)[:2] == _rows(DATA / "archive-v2.csv")
    assert _rows(csv) == _rows(DATA / "archive-v2-resumed.csv")
    with Archive.open(h5) as arc:
        assert arc.version == 4 and len(arc) == 4
        assert [_fingerprint(p) for p in list(arc)[:2]] == before   # kept byte for byte
    assert nexus_problems(h5) == []
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["entry/data/g_lum"][:], Spectrum.read_csv(csv).g_lum)


def _fingerprint(point) -> str:
    """A point's settings, result and frames as text."""
    frames = point.frames
    return json.dumps([vars(point.settings), point.result.as_dict(), frames.counts.tolist(),
                       frames.seq.tolist(), frames.flags.tolist()],
                      default=lambda a: np.asarray(a).tolist())


def test_names_and_units_follow_the_csv_columns_and_the_detection_mode():
    from cplscope.data.archive_nexus import field_name
    from cplscope.data.units import intensity_unit

    assert [field_name(c) for c in ("wavelength_nm", "sigma_g", "dwell_s", "ellipticity_mdeg",
                                    "sigma_delta_a", "g_lum")] == [
        "wavelength", "g_lum_errors", "dwell", "ellipticity", "delta_a_errors", "g_lum"]
    counting = {"settings": {"mode": "counting"}, "units": {"intensity": "cps"}}
    assert intensity_unit(counting) == "counts/s"
    # an analog scan's intensities are period-mean ADC levels, whatever units.intensity says
    assert intensity_unit({**counting, "settings": {"mode": "analog"}}) == "ADC counts"
    assert intensity_unit({"units": {"intensity": "a.u."}}) == "a.u."
