"""Minimal MicroPython test runner: `micropython runner.py MODULE [TEST ...]`.

Runs the test_* functions of MODULE (all, or the ones named) and prints one line per test:
`PASS name` or `FAIL name` followed by the traceback. Exit status 1 if any test failed.
"""
import sys
import io


def main(argv):
    mod = __import__(argv[1])
    names = argv[2:] or sorted(n for n in dir(mod) if n.startswith("test_"))
    failed = 0
    for n in names:
        try:
            getattr(mod, n)()
            print("PASS", n)
        except Exception as e:
            failed += 1
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print("FAIL", n)
            print(buf.getvalue())
    return 1 if failed else 0


sys.exit(main(sys.argv))
