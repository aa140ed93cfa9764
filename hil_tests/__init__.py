"""Hardware-in-the-loop acceptance tests: the same tests against the simulated instrument
(default) or a real board (``--board usb``). See docs/hil-tests.md."""
