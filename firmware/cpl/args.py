"""Command argument parsing and validation. Every failure raises CommandError with a
protocol status code and a text that says what was wrong and what is allowed."""
import json

from cpl import protocol as P

INT = "integer"
NUM = "number"
BOOL = "boolean"
STR = "string"


# a handler's result meaning "the reply comes later, from the main loop" (HOME)
DEFERRED = object()


class CommandError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def bad_state(text: str) -> CommandError:
    return CommandError(P.ST_BAD_STATE, text)


def parse(raw) -> dict:
    """JSON object from the args bytes of a COMMAND (empty = {})."""
    if len(raw) == 0:
        return {}
    try:
        text = str(bytes(raw), "utf-8")
    except Exception:
        raise CommandError(P.ST_BAD_ARGS, "args are not valid UTF-8")
    try:
        obj = json.loads(text)
    except Exception:
        raise CommandError(P.ST_BAD_ARGS, "args are not valid JSON: send a JSON object")
    if type(obj) is not dict:
        raise CommandError(P.ST_BAD_ARGS, "args must be a JSON object, got %s" % _kind(obj))
    return obj


def _kind(v) -> str:
    t = type(v)
    if t is bool:
        return BOOL
    if t is int:
        return INT
    if t is float:
        return NUM
    if t is str:
        return STR
    if v is None:
        return "null"
    if t is dict:
        return "object"
    if t is list:
        return "array"
    return "value"


def check(args: dict, spec: dict, required: tuple = ()) -> dict:
    """Check keys and types. `spec` maps each allowed key to INT, NUM, BOOL or STR; keys in
    `required` must be present. Numbers come back as float, finite."""
    for k in args:
        if k not in spec:
            raise CommandError(P.ST_BAD_ARGS, "unknown key %r; allowed: %s"
                               % (k, ", ".join(sorted(spec)) or "none"))
    for k in required:
        if k not in args:
            raise CommandError(P.ST_BAD_ARGS, "missing key %r" % k)
    out = {}
    for k in args:
        v = args[k]
        want = spec[k]
        got = _kind(v)
        if want == NUM and got in (INT, NUM):
            v = float(v)
            if v != v or v in (float("inf"), float("-inf")):
                raise CommandError(P.ST_BAD_ARGS, "%s must be a finite number" % k)
        elif got != want:
            raise CommandError(P.ST_BAD_ARGS, "%s must be a %s, got %s" % (k, want, got))
        out[k] = v
    return out


def in_range(name: str, v, lo, hi, unit: str = "") -> None:
    if not (lo <= v <= hi):
        raise CommandError(P.ST_OUT_OF_RANGE, "%s=%s out of range %s..%s%s"
                           % (name, _fmt(v), _fmt(lo), _fmt(hi), (" " + unit) if unit else ""))


def one_of(name: str, v: str, choices: tuple) -> None:
    if v not in choices:
        raise CommandError(P.ST_OUT_OF_RANGE, "%s=%r must be one of %s"
                           % (name, v, ", ".join(choices)))


def _fmt(v) -> str:
    if type(v) is float and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return str(v)
