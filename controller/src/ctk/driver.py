# The Python driver of `chaos run` for Chaos Toolkit experiments (controller/src/ctk/python.rs embeds this file and
# runs it as `python -u -c <this file>`). It speaks JSON lines: one request a line on stdin, one response a line on
# a private copy of stdout (fd 1 itself is pointed at stderr, so a print() in user code cannot break the protocol;
# stderr is logged by the controller). Every request carries an `id` and runs on a thread of its own, so a
# background activity never blocks the others; the response carries the same `id`.
#
# Requests (`op`):
#   ping                                    -> {"pong": true}
#   validate  module func arguments         -> {"ok": null} | {"invalid": reason}     (chaoslib's validate_python_activity)
#   call      module func arguments configuration secrets?
#                                           -> {"ok": value, "configuration": {...}} | {"exception": [lines], "configuration": {...}}
#   import    module                        -> {"ok": null} | {"missing": reason}
#   control   module func arguments kwargs inject
#                                           -> {"ok": null} | {"absent": true} | {"missing": reason}
#                                              | {"failed": [lines]} | {"interrupt": message}
# `inject` holds values passed only when the function declares a parameter of that name (configuration, secrets,
# state, experiment, extensions, settings), as chaoslib does; `kwargs` are always passed (context).
#
# Works with and without chaoslib installed: without it, ActivityFailed and InterruptExecution are local classes
# named as chaoslib's, so journals read the same.
import datetime
import decimal
import importlib
import inspect
import json
import math
import os
import sys
import threading
import traceback
import uuid

MAX_LINE = int(os.environ.get("CHAOS_PYTHON_MAX_LINE", str(16 * 1024 * 1024)))

_proto = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
os.dup2(2, 1)
sys.stdout = sys.stderr
_write_lock = threading.Lock()

try:
    from chaoslib.exceptions import ActivityFailed, InterruptExecution
except Exception:  # chaoslib is not installed: plain modules still run

    class ActivityFailed(Exception):
        pass

    class InterruptExecution(Exception):
        pass

    ActivityFailed.__module__ = "chaoslib.exceptions"
    InterruptExecution.__module__ = "chaoslib.exceptions"


def _is_interrupt(exc):
    return isinstance(exc, InterruptExecution) or type(exc).__name__ == "InterruptExecution"


def plain(value, depth=0):
    """The value as JSON can hold it: tuples and sets become lists, bytes UTF-8 text, dates ISO 8601, Decimal and
    UUID strings, NaN and infinities null, mapping keys strings, and anything else its repr()."""
    if depth > 64:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return repr(value)


def send(message):
    text = json.dumps(message, ensure_ascii=False, allow_nan=False)
    if len(text) > MAX_LINE:
        text = json.dumps(
            {
                "id": message.get("id"),
                "exception": [
                    "chaoslib.exceptions.ActivityFailed: the python driver's response is {} bytes, more than the "
                    "limit of {}\n".format(len(text), MAX_LINE)
                ],
            }
        )
    with _write_lock:
        _proto.write(text + "\n")
        _proto.flush()


def signature(func):
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def validate(req):
    """chaoslib.provider.python.validate_python_activity, with its messages."""
    mod_name, func, name = req.get("module"), req.get("func"), req.get("name", "")
    if not mod_name:
        return {"invalid": "a Python activity must have a module path"}
    if not func:
        return {"invalid": "a Python activity must have a function name"}
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as x:
        return {"invalid": "could not find Python module '{}' in activity '{}' ({})".format(mod_name, name, x)}
    candidates = dict(inspect.getmembers(mod, inspect.isfunction))
    candidates.update(inspect.getmembers(mod, inspect.isbuiltin))
    cb = candidates.get(func)
    if cb is None:
        return {
            "invalid": "The python module '{}' does not expose a function called '{}' in {} '{}'".format(
                mod_name, func, req.get("type", "activity"), name
            )
        }
    sig = signature(cb)
    if sig is None:
        return {"ok": None}
    args = dict(req.get("arguments") or {})
    if "secrets" in sig.parameters:
        args["secrets"] = None
    if "configuration" in sig.parameters:
        args["configuration"] = None
    try:
        sig.bind(**args)
    except TypeError as x:
        msg = str(x)
        if "missing" in msg:
            arg = msg.rsplit(":", 1)[1].strip()
            # chaoslib names the function here, not the activity (its loop variable shadows the name)
            return {"invalid": "required argument {} is missing from activity '{}'".format(arg, func)}
        if "unexpected" in msg:
            arg = msg.rsplit(" ", 1)[1].strip()
            return {
                "invalid": "argument {} is not part of the function signature in activity '{}'".format(arg, func)
            }
        return {"invalid": "arguments do not match {}.{}: {}".format(mod_name, func, msg)}
    return {"ok": None}


def call(req):
    """chaoslib.provider.python.run_python_activity: the return value, or the exception as chaoslib journals an
    ActivityFailed (the original traceback, then the ActivityFailed wrapping it)."""
    configuration = dict(req.get("configuration") or {})
    try:
        try:
            mod = importlib.import_module(req["module"])
            func = getattr(mod, req["func"])
            arguments = dict(req.get("arguments") or {})
            sig = signature(func)
            params = sig.parameters if sig is not None else {}
            secrets = req.get("secrets")
            if secrets is not None and "secrets" in params:
                arguments["secrets"] = secrets
            if "configuration" in params:
                arguments["configuration"] = configuration
            value = func(**arguments)
        except Exception as x:
            raise ActivityFailed(traceback.format_exception_only(type(x), x)[0].strip()).with_traceback(
                sys.exc_info()[2]
            )
    except ActivityFailed as x:
        return {"exception": traceback.format_exception(type(x), x, None), "configuration": plain(configuration)}
    return {"ok": plain(value), "configuration": plain(configuration)}


def import_module(req):
    try:
        importlib.import_module(req["module"])
    except ImportError as x:
        return {"missing": str(x)}
    return {"ok": None}


def control(req):
    """chaoslib.control.python.apply_python_control (and configure_control/cleanup_control): exceptions are
    reported, InterruptExecution apart."""
    try:
        mod = importlib.import_module(req["module"])
    except ImportError as x:
        return {"missing": str(x)}
    func = getattr(mod, req["func"], None)
    if func is None:
        return {"absent": True}
    arguments = dict(req.get("arguments") or {})
    sig = signature(func)
    params = sig.parameters if sig is not None else {}
    for key, value in (req.get("inject") or {}).items():
        if key in params:
            arguments[key] = value
    arguments.update(req.get("kwargs") or {})
    try:
        func(**arguments)
    except Exception as x:
        if _is_interrupt(x):
            return {"interrupt": str(x) or type(x).__name__}
        return {"failed": traceback.format_exception(type(x), x, x.__traceback__)}
    return {"ok": None}


OPS = {"validate": validate, "call": call, "import": import_module, "control": control}


def serve(req):
    rid = req.get("id")
    try:
        op = OPS.get(req.get("op"))
        if op is None:
            response = {"error": "unknown op {!r}".format(req.get("op"))}
        else:
            response = op(req)
    except BaseException as x:  # a bug here, or SystemExit from user code: answer, never hang the caller
        response = {"exception": traceback.format_exception(type(x), x, x.__traceback__)}
    response["id"] = rid
    try:
        send(response)
    except Exception as x:
        send({"id": rid, "exception": ["chaoslib.exceptions.ActivityFailed: cannot encode the response: {}\n".format(x)]})


def main():
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stdin.readline(MAX_LINE + 1)
            send({"id": None, "error": "request longer than {} bytes".format(MAX_LINE)})
            continue
        try:
            req = json.loads(line)
        except ValueError as x:
            send({"id": None, "error": "bad request: {}".format(x)})
            continue
        if req.get("op") == "ping":
            send({"id": req.get("id"), "pong": True})
            continue
        threading.Thread(target=serve, args=(req,), daemon=True).start()


main()
