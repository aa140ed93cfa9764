"""Independent noise by default (issue 21): a simulated run without --seed draws a fresh
seed, records it and says how to repeat the run; --seed N repeats it exactly."""
import json
import re

import cplscope
from cplscope.cli.main import main
from cplscope.data.spectrum import Spectrum

NOTE = re.compile(r"noise seed (\d+) .*--seed (\d+)\)")
POINT = ["-q", "point", "--sim", "--wavelength", "438", "--dwell", "2", "--dark-dwell", "1",
         "--json"]


def run_point(argv, capfd):
    assert main(argv) == 0
    out, err = capfd.readouterr()
    return json.loads(out.strip().splitlines()[-1]), err


def test_a_run_without_seed_gets_its_own_noise_and_says_how_to_repeat_it(cli_home, capfd):
    first, err1 = run_point(POINT, capfd)
    second, err2 = run_point(POINT, capfd)
    seeds = [NOTE.search(err) for err in (err1, err2)]
    assert all(seeds) and all(m.group(1) == m.group(2) for m in seeds)
    assert seeds[0].group(1) != seeds[1].group(1)
    assert first["g_lum"] != second["g_lum"]             # two noise realizations
    again, err = run_point(POINT + ["--seed", seeds[0].group(1)], capfd)
    assert again == first                                 # --seed N repeats the run exactly
    assert "noise seed" not in err                        # a given seed needs no note


def test_the_seed_is_in_the_run_metadata_and_samples_never_share_one(cli_home, tmp_path,
                                                                     capfd):
    specs = []
    for sample in ("R-Cs4PbBr6", "S-Cs4PbBr6"):            # measured one after the other
        out = tmp_path / f"{sample}.csv"
        assert main(["-q", "scan", "--sim", "--sample", sample, "--start", "436", "--stop",
                     "438", "--step", "2", "--dwell", "1", "--no-dark", "--output",
                     str(out)]) == 0
        note = NOTE.search(capfd.readouterr().err)
        spec = Spectrum.read_csv(out)
        assert spec.metadata["settings"]["seed"] == int(note.group(1))
        assert spec.metadata["instrument"]["sim_seed"] == int(note.group(1))
        specs.append(spec)
    assert specs[0].metadata["settings"]["seed"] != specs[1].metadata["settings"]["seed"]


def test_connect_draws_a_seed_unless_given_one():
    with cplscope.connect("sim", sample="blank") as a, cplscope.connect("sim",
                                                                        sample="blank") as b:
        assert a.info()["sim_seed"] != b.info()["sim_seed"]
        assert a.sim_seed == a.info()["sim_seed"]
    with cplscope.connect("sim", sample="blank", seed=5) as c:
        assert c.info()["sim_seed"] == 5
