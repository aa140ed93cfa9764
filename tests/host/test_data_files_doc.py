"""docs/data-files.md, "Opening the files in h5py, xarray and pandas": every snippet runs as
written, in order, on a simulated scan's CSV and archive (and a CD scan's), and gives what
the text says it gives."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cplscope.data.spectrum import Spectrum

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-files.md"
SECTION = "## Opening the files in h5py, xarray and pandas"


def snippets() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_section_has_the_snippets_it_promises():
    code = "\n".join(snippets())
    for tool in ("import h5py", "import xarray", "import pandas", "nxload", '"cd.h5"'):
        assert tool in code, tool


def test_every_snippet_runs_and_reads_what_the_run_wrote(nexus_runs, monkeypatch, capsys):
    pytest.importorskip("xarray")
    pytest.importorskip("nexusformat")
    monkeypatch.chdir(nexus_runs)
    space: dict = {}
    for code in snippets():
        exec(compile(code, str(DOC), "exec"), space)     # noqa: S102 - the docs' own code
    spec = Spectrum.read_csv(nexus_runs / "run.csv")
    # pandas, numpy and xarray read the CSV's columns
    np.testing.assert_array_equal(space["spec"]["g_lum"].to_numpy(), spec.g_lum)
    np.testing.assert_array_equal(space["table"]["sigma_g"], spec.sigma_g)
    assert space["csv"].g_lum.dims == ("wavelength_nm",)
    # h5py: the default plot is g_lum ± σ against wavelength, as in the CSV
    assert space["signal"] == "g_lum"
    np.testing.assert_array_equal(space["x"], spec.wavelength_nm)
    np.testing.assert_array_equal(space["y"], spec.g_lum)
    np.testing.assert_array_equal(space["dy"], spec.sigma_g)
    # xarray and pandas: the spectrum along wavelength, one mean per accumulation
    assert space["frame"].index.name == "wavelength"
    np.testing.assert_array_equal(space["frame"]["g_lum"].to_numpy(), spec.g_lum)
    assert space["by_scan"].dims == ("accumulation",) and space["by_scan"].size == 2
    out = capsys.readouterr().out
    assert "circularly polarized luminescence 3 points, nm" in out
    assert "g_lum against wavelength nm" in out
    assert "circular dichroism delta_a mdeg" in out
    space["root"].nxfile.close()
