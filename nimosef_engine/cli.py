"""``nimosef`` command line: one sub-command module per job in :mod:`nimosef_engine.commands`.

Each module in ``COMMANDS`` exposes ``register(subparsers)`` which adds its parser and sets
``func=run`` (``run(args) -> int``). User-facing problems (:class:`NimosefInputError`) become a
one-line message on stderr and exit code 2; an operating-system error (disk full, permission
denied) a one-line message naming the file and exit code 1; a cancel exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from nimosef_engine import __version__
from nimosef_engine.core.errors import NimosefCancelled, NimosefInputError
from nimosef_engine.core.threads import set_openmp_waiting, subnormals

log = logging.getLogger(__name__)

COMMANDS = [
    "preprocess",
    "split",
    "train",
    "train_slice_net",
    "fit",
    "generate",
    "metrics",
    "segment_track",
    "segment_track_batch",
    "resample",
    "evaluate",
    "calibrate_fit",
]


def _command_named(argv: list[str]) -> str | None:
    """The sub-command module ``argv`` names (its first word that is not an option), if any."""
    word = next((a for a in argv if not a.startswith("-")), None)
    name = word.replace("-", "_") if word else None
    return name if name in COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``only``, that sub-command's alone (the others' modules are not
    imported: a run starts sooner)."""
    parser = argparse.ArgumentParser(
        prog="nimosef",
        description="NIMOSEF: implicit segmentation and motion of cardiac cine MRI. "
                    "Research software, not a medical device.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in [only] if only else COMMANDS:
        try:
            module = importlib.import_module(f"nimosef_engine.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"nimosef_engine.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def as_flag(exc: NimosefInputError, parser: argparse.ArgumentParser, command: str) -> str:
    """The error's message with the option it names (``res_factor_z``, as the library says)
    written as the command's flag (``--res-factor-z``), when the command has that flag."""
    if not exc.path or not exc.path.replace("_", "").isalnum():
        return str(exc)
    flag = "--" + exc.path.replace("_", "-")
    for action in parser._actions:  # argparse keeps its subcommands' parsers only here
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            flags = {s for a in action.choices[command]._actions for s in a.option_strings}
            if flag in flags:
                return f"{flag}: {exc.problem}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_named(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with subnormals(flush=True):  # before torch starts its threads (core.threads)
            return int(args.func(args) or 0)
    except NimosefInputError as exc:
        print(f"nimosef {args.command}: error: {as_flag(exc, parser, args.command)}",
              file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not the input: disk full, permissions, ...
        log.debug("operating-system error", exc_info=True)
        where = exc.filename or args.command
        print(f"nimosef {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except NimosefCancelled:
        print(f"nimosef {args.command}: cancelled; no output was written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"nimosef {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``nimosef`` process: :func:`main`, then exit. After a cancel (130) the process ends
    at once: the job has already stopped and removed what it wrote, and the interpreter's
    own shutdown (unloading torch and the rest) takes seconds on a loaded machine. Torch's
    threads wait briefly, not spinning, for work (:mod:`core.threads`)."""
    set_openmp_waiting()  # before any command module loads torch
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
