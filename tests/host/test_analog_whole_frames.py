"""An analog acquisition of n frame times gives n frames, whatever the ADC samples' phase
against the frames: a frame holds a whole number of samples, a hair more or less than its
nominal time, and five of them may add up to 0.49999 s."""
import math

import cplscope


def test_every_acquisition_of_half_a_second_gives_five_tenth_second_frames(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path))
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=43) as inst:
        inst.prepare(bins=16, periods=5000, hv_volts=800, a0_rad=math.pi / 2, mode="analog")
        inst.move_to(470)
        counts = [inst.acquire_analog(duration_s=0.5, n_bins=16, frame_periods=5000).n_frames
                  for _ in range(6)]
    assert counts == [5] * 6
