"""`cplscope plot` (issue 25): without --output a window where there is a display, else
NAME.png next to the CSV; it reads its own spectrum CSV, its JASCO-style export and a plain
wavelength,g_lum,sigma_g CSV, and names the file and what it reads when given anything else."""
import math

import numpy as np
import pytest

import cplscope
from cplscope.cli import files
from cplscope.cli.main import main
from cplscope.data.export import write_jasco_csv
from cplscope.data.readers import read_cpl_file
from cplscope.data.spectrum import Spectrum
from cplscope.science.results import PointResult

WL = np.arange(420.0, 461.0, 2.0)


def spectrum(seed=1, name="R-Cs4PbBr6"):
    rng = np.random.default_rng(seed)
    pts = []
    for wl in WL:
        i = 1e6 * math.exp(-0.5 * ((wl - 438.0) / 7.6) ** 2) + 1e3
        g = 6e-4 + 1e-4 * rng.standard_normal()
        d = i * g / 2
        pts.append(PointResult(float(wl), i, (i + d) / 2, (i - d) / 2, d, g, 1e-4, 0.0, 1e-4,
                               1.0, 100, 20.0, (), math.sqrt(i)))
    return Spectrum(pts, {"sample": name, "date": "2026-02-03T04:05:06+00:00",
                          "units": {"intensity": "cps"}})


@pytest.fixture
def folder(monkeypatch, tmp_path):
    def refuse(*a, **kw):
        raise AssertionError("plot connected to an instrument")

    monkeypatch.setattr(cplscope, "connect", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_output_and_display_the_figure_goes_next_to_the_csv(folder, monkeypatch,
                                                                    capfd):
    monkeypatch.setattr(files, "can_show", lambda: False)
    sub = folder / "runs"
    sub.mkdir()
    spectrum().write_csv(sub / "r.csv")
    assert main(["plot", str(sub / "r.csv")]) == 0
    out = capfd.readouterr().out
    assert (sub / "r.png").read_bytes()[:4] == b"\x89PNG" and str(sub / "r.png") in out
    assert main(["plot", str(sub / "r.csv")]) == 2           # it exists: refused, named
    err = capfd.readouterr().err
    assert "r.png" in err and "--overwrite" in err and "--output" in err
    spectrum(2, "S-Cs4PbBr6").write_csv(sub / "s.csv")
    assert main(["plot", str(sub / "r.csv"), str(sub / "s.csv"), "--mirror"]) == 0
    assert (sub / "r+s.png").exists()


def test_with_a_display_the_figure_opens_in_a_window(folder, monkeypatch, capfd):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(files, "can_show", lambda: True)
    monkeypatch.setattr(plt, "show", lambda *a, **kw: shown.append(plt.gcf()))
    spectrum().write_csv(folder / "r.csv")
    assert main(["plot", "r.csv"]) == 0
    assert "window" in capfd.readouterr().out and not (folder / "r.png").exists()
    (fig,) = shown
    assert "R-Cs4PbBr6" in fig.get_suptitle() and len(fig.axes) == 3
    plt.close("all")


def table(path, header, sep, spec, columns):
    """A plain CSV of ``spec``'s ``columns`` under ``header``."""
    rows = [sep.join(str(getattr(p, c)) for c in columns) for p in spec]
    path.write_text("\n".join([header, *rows]) + "\n")


def test_plain_and_jasco_csvs_are_read(folder, capfd):
    spec = spectrum()
    table(folder / "plain.csv", "# exported by hand\nwavelength,g_lum,sigma_g", ",",
          spec, ("wavelength_nm", "g_lum", "sigma_g"))
    plain = read_cpl_file(folder / "plain.csv")
    np.testing.assert_allclose(plain.g_lum, spec.g_lum)
    np.testing.assert_allclose(plain.sigma_g, spec.sigma_g)
    assert np.isnan(plain.intensity).all() and plain.metadata["sample"] == "plain"
    assert main(["plot", "plain.csv", "--output", "plain.png"]) == 0
    table(folder / "semi.csv", "Lambda;GLUM;Err;DC", ";", spec,   # other separators, names
          ("wavelength_nm", "g_lum", "sigma_g", "intensity"))
    semi = read_cpl_file(folder / "semi.csv")
    np.testing.assert_allclose(semi.intensity, spec.intensity)
    np.testing.assert_allclose(semi.delta_i, spec.delta_i)
    write_jasco_csv(spec, folder / "r-jasco.csv", ("delta_i", "intensity", "g_lum", "sigma_g"))
    jasco = read_cpl_file(folder / "r-jasco.csv")
    np.testing.assert_allclose(jasco.g_lum, spec.g_lum, rtol=1e-9)
    np.testing.assert_allclose(jasco.sigma_g, spec.sigma_g, rtol=1e-9)
    np.testing.assert_allclose(jasco.intensity, spec.intensity, rtol=1e-9)
    assert jasco.metadata["sample"] == "R-Cs4PbBr6"
    assert jasco.metadata["date"].startswith("2026-02-03")
    assert main(["plot", "r-jasco.csv", "--output", "j.png"]) == 0
    write_jasco_csv(spec, folder / "no-sigma.csv")           # g without σ: a line, no bars
    assert np.isnan(read_cpl_file(folder / "no-sigma.csv").sigma_g).all()
    assert main(["plot", "no-sigma.csv", "--output", "n.png"]) == 0


def test_a_figure_name_without_a_known_suffix_is_refused(folder, capfd):
    spectrum().write_csv(folder / "r.csv")
    assert main(["plot", "r.csv", "--output", "fig.jpg"]) == 2
    err = capfd.readouterr().err
    assert "--output fig.jpg" in err and ".png" in err


@pytest.mark.parametrize("name,content,expected", [
    ("run.h5", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4, ["run.h5", "HDF5",
                                                            "cplscope reprocess"]),
    ("plain.csv", b"time,counts\n1,2\n", ["plain.csv", "wavelength", "g_lum",
                                          "`cplscope plot` reads"]),
    ("cd.csv", None, ["cd.csv", "CD spectrum", "cplscope cd-plot cd.csv"]),
    ("junk.csv", b"\xff\xfe\x00\x01binary" * 10, ["junk.csv", "not a text file"]),
    ("empty.csv", b"# only a comment\n", ["empty.csv", "no data"]),
    ("bad-row.csv", b"wavelength,g_lum\n400,1e-3\n402,abc\n", ["bad-row.csv", "line 3"]),
])
def test_other_files_are_named_with_what_plot_reads(folder, capfd, name, content, expected):
    if content is None:
        from cplscope.data.cd_spectrum import CDSpectrum
        from cplscope.science.cd import CDPointResult

        CDSpectrum([CDPointResult(400.0, 0.5, 1e-3, 1e-3, 1e-4, 2e-3, 2e-4, 33.0, 0.0, 1.0,
                                  10, 1.0)], {"sample": "CSA"}).write_csv(folder / name)
    else:
        (folder / name).write_bytes(content)
    assert main(["plot", name]) == 2                      # no --output needed to hear why
    err = capfd.readouterr().err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err and not list(folder.glob("*.png"))
