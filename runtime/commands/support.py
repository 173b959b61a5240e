"""Shared plumbing of every command-line tool: exit statuses a controller can trust.

0 success / verified, 1 not verified, 2 bad input or usage (one line on stderr), 3 internal
error (one line; the traceback only with -v or SIAMESE_DEBUG=1). No traceback reaches a user.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import threading
import traceback

import click
from siamese.runtime.errors import MissingExtraError, SiameseError
from siamese.runtime.redact import redact

EXIT_OK, EXIT_NOT_VERIFIED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

# optional dependencies and the extra that installs them
EXTRAS = {"torch": "train", "torchvision": "train", "onnx": "train", "onnxscript": "train",
          "onnxconverter_common": "train", "sklearn": "train", "matplotlib": "train",
          "tqdm": "train", "dlib": "teacher", "face_recognition_models": "teacher",
          "fastapi": "serve", "uvicorn": "serve", "multipart": "serve"}


def install_hint(extra: str) -> str:
    """How to install an extra: siamese-edge is installed from its source tree (not on PyPI)."""
    return (f'pip install "<checkout>[{extra}]" (from the siamese-edge source tree: '
            f'pip install ".[{extra}]"; the package is not on PyPI)')


def missing_extra(module: str) -> MissingExtraError:
    """The error for a module of an extra that is not installed, saying which extra."""
    return MissingExtraError(f"this command needs {module}, which is not installed: "
                             f"{install_hint(EXTRAS[module])}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _verbose(args: list[str]) -> bool:
    return "-v" in args or "--verbose" in args or os.environ.get("SIAMESE_DEBUG") == "1"


def _fail(message: str, status: int) -> None:
    click.echo(redact(" ".join(str(message).split())), err=True)
    sys.exit(status)


class SiameseCommandMixin:
    """Runs a click command so that every failure becomes one line and the right exit status."""

    def __init__(self, *args, needs: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.needs = needs  # modules of an extra the command cannot run (or explain) without

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        for module in self.needs:
            if not _installed(module):
                _fail(f"error: {missing_extra(module)}", EXIT_USAGE)
        try:
            self._run(args, prog_name, complete_var, **extra)
        except SystemExit as exc:
            _exit_past_stuck_readers(exc)
            raise
        _exit_past_stuck_readers(SystemExit(EXIT_OK))

    def _run(self, args, prog_name, complete_var, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except click.UsageError as exc:
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
            _fail(f"error: {exc.format_message()}{hint}", EXIT_USAGE)
        except click.ClickException as exc:
            _fail(f"error: {exc.format_message()}", EXIT_USAGE)
        except SiameseError as exc:
            _fail(f"error: {exc}", EXIT_USAGE)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            if root not in EXTRAS:
                _internal(exc, args)
            _fail(f"error: {missing_extra(root)}", EXIT_USAGE)
        except MemoryError:
            _fail("error: out of memory", EXIT_INTERNAL)
        except Exception as exc:  # anything else is our bug: say so, never as "not verified"
            _internal(exc, args)


STUCK_THREAD_NAMES = ("source-open", "frame-reader")


def _exit_past_stuck_readers(exc: SystemExit) -> None:
    """End the process now when a camera or stream thread is stuck inside OpenCV.

    A backend call that ignores its timeout cannot be interrupted; waiting for it at exit
    would hang, and tearing it down aborts the process. The output is flushed first.
    """
    if not any(t.is_alive() and t.name in STUCK_THREAD_NAMES for t in threading.enumerate()):
        return
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _internal(exc: BaseException, args: list[str]) -> None:
    if _verbose(args):
        traceback.print_exception(exc, file=sys.stderr)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    _fail(f"internal error: {type(exc).__name__}: {first} (run with -v for details)",
          EXIT_INTERNAL)


class SiameseCommand(SiameseCommandMixin, click.Command):
    """`@click.command(cls=SiameseCommand)`."""


class SiameseGroup(SiameseCommandMixin, click.Group):
    """`@click.group(cls=SiameseGroup)`; its sub-commands are plain click commands."""


class FiniteFloat(click.ParamType):
    """A float that is finite and inside [low, high] (nan and inf are refused)."""

    name = "number"

    def __init__(self, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        below = number <= self.low if self.low_open else number < self.low
        if below or number > self.high:
            bound = "(" if self.low_open else "["
            self.fail(f"{value} is outside {bound}{self.low:g}, {self.high:g}]", param, ctx)
        return number


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
