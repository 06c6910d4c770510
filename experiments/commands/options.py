"""What every command shares: its error handling and the options several commands take.

A command raises UserError (or TrainFailed) for anything the user can fix; `user_errors` turns
it into one line on stderr, `error: ...`, and the exit code (2 for a user error).
"""

from __future__ import annotations

import functools

import typer

from experiments.errors import TrainFailed, UserError

# the command line as typed (cli.main sets it): `train --nproc N` re-runs it under torchrun
ARGV: list[str] = []


def one_line(msg: str) -> str:
    """A message as one printable line: control characters (a newline in a path) escaped, and lone
    surrogates (a path typed in another encoding), which a strict UTF-8 stream cannot write."""
    msg = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in msg)
    return msg.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(msg: str, code: int = 2) -> None:
    typer.echo("error: " + one_line(msg), err=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn UserError (and friends) into one line + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except TrainFailed as e:
            fail(str(e), e.code)

    return wrapper


SetOpt = typer.Option([], "--set", "-s", help="override a config field: task.KEY=V, model.KEY=V or train.KEY=V")
IncludeOpt = typer.Option([], "--include", help="a Python file defining extra task classes")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | mps")
TrustOpt = typer.Option(False, "--trust-code", help="run the task code kept in a run folder that was not trained "
                        "on this machine (a downloaded export, say); only for folders you trust")
