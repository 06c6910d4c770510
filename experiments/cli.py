"""The `workbench` command line (typer): the app, its exit codes, and how each command is found.

Exit codes: 0 success; 1 a failure the tool reports (a failed check, a failed run) or an internal
error; 2 a user error. A user error ends in one line on stderr, `error: ...`. An error the code does
not expect ends in one line too, `internal error: ...`; `WORKBENCH_DEBUG=1` shows its traceback.

The commands live in experiments/commands/, one module per family, each imported only when one of
its commands runs (LazyCommands): `workbench --help`, `tasks` and `presets` never load torch.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

import typer
from typer.core import TyperGroup

try:  # recent typer vendors click as typer._click; older ones use click itself
    from typer._click import exceptions as click_exc
    from typer._click.utils import make_default_short_help
except ImportError:  # pragma: no cover
    import click.exceptions as click_exc
    from click.utils import make_default_short_help

from experiments.sweep import lifeline
from experiments.commands import COMMANDS, options
from experiments.errors import USER_ERRNOS


class LazyCommands(TyperGroup):
    """A group whose commands are imported on first use (click's lazy-loading pattern); its help
    lists them from the COMMANDS table, without importing any."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        command = COMMANDS.get(name)
        if command is None:
            return None
        group = typer.main.get_group(importlib.import_module(command.module).app)
        return group if group.name == name else group.get_command(ctx, name)

    def format_commands(self, ctx, formatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        with formatter.section("Commands"):
            formatter.write_dl([(c.name, make_default_short_help(c.summary, limit)) for c in COMMANDS.values()])


app = typer.Typer(
    cls=LazyCommands, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
    no_args_is_help=True, help="workbench: train small GPTs on synthetic tasks and Shakespeare, and score them.",
)


@app.callback()
def workbench() -> None:
    """workbench: train small GPTs on synthetic tasks and Shakespeare, and score them."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM outside training (which checkpoints on them itself): raised where the
    process is, so that every write under way removes its temp file on the way out.  A
    BaseException, so that no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while a command runs; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Entry point: click's usage errors become one line and exit code 2 as well."""
    options.ARGV[:] = sys.argv[1:] if argv is None else argv
    try:
        with signals_raise():
            rv = app(args=argv, standalone_mode=False, prog_name="workbench")
        return rv if isinstance(rv, int) else 0
    except Interrupted as e:
        name = signal.Signals(e.signum).name
        typer.echo(f"error: interrupted by {name}; nothing was left half-written", err=True)
        return 128 + e.signum
    except typer.Exit as e:
        return e.exit_code
    except click_exc.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            typer.echo(e.ctx.get_help() if e.ctx else "see `workbench --help`", err=True)
            return 0
        # command_path names a sub-command in full ("workbench export task"), prog_name included
        cmd = f"{e.ctx.command_path} --help" if e.ctx else "workbench --help"
        typer.echo(f"error: {e.format_message()} (see `{cmd}`)", err=True)
        return 2
    except click_exc.ClickException as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return 2
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return _unexpected(e)


def _unexpected(e: BaseException) -> int:
    """An exception no command turned into a UserError: exit 2 if it is the user's, else 1."""
    if os.environ.get("WORKBENCH_DEBUG"):
        raise e
    if isinstance(e, OSError) and e.errno in USER_ERRNOS:
        where = f": {e.filename}" if e.filename else ""
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        return 2
    if isinstance(e, MemoryError):
        typer.echo("error: out of memory; try a smaller --batch-size, model or --n", err=True)
        return 2
    msg = " ".join(str(e).split()) or "(no message)"
    typer.echo(f"internal error: {type(e).__name__}: {msg[:500]} "
               "(a bug; WORKBENCH_DEBUG=1 shows the traceback)", err=True)
    return 1


def entry() -> None:
    lifeline.hold()  # a `workbench run` subprocess ends with its runner
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # a torchrun rank: see gpt.distributed.exit_rank for why it skips finalization (torch is loaded by now)
        importlib.import_module("gpt.distributed").exit_rank(code)
    sys.exit(code)
