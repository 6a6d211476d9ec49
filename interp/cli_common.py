"""What every `interp` command shares: errors as one `error: ...` line with rc 2 (never a
traceback), and logging set up for the terminal."""
from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own click; its exceptions are not click's
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exc

log = logging.getLogger("interp")
F = TypeVar("F", bound=Callable[..., Any])


class OneLineErrors(TyperGroup):
    """Usage errors (a bad flag or value) as one `error: ...` line with rc 2, like every other
    CLI error, instead of click's usage box."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_exc.NoArgsIsHelpError:
            # `interp` alone: the help text is the answer; typer's standalone path prints it
            return super().main(*args, standalone_mode=True, **kwargs)
        except click_exc.ClickException as err:
            where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else ""
            typer.secho(f"error: {where}{one_line(err.format_message())}", fg=typer.colors.RED,
                        err=True)
            sys.exit(2)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def setup_logging(verbose: bool) -> None:
    """Log lines to stderr (stdout carries command output); -v for debug, never the HTTP chatter."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "filelock", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def one_line(msg: str) -> str:
    """A (possibly multi-line) message on one line: "head: item; item" (config errors list one
    field per line)."""
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])] if len(lines) > 1 else lines)


def fail(msg: str) -> None:
    typer.secho(f"error: {one_line(msg)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def cli_errors(fn: F) -> F:
    """Any exception a command lets escape becomes one `error: ...` line and rc 2, never a
    traceback (which -v logs at debug level). Usage errors are handled by OneLineErrors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exc.ClickException):  # typer.Exit is a RuntimeError
            raise
        except Exception as err:  # noqa: BLE001 - the last stop before the user's terminal
            log.debug("%s failed", fn.__name__, exc_info=True)
            from storage.read import CatalogError  # a damaged catalogue: names it and the fix
            known = isinstance(err, (ValueError, OSError, CatalogError))  # messages name the file
            fail(str(err) if known else f"{type(err).__name__}: {err}")
    return wrapper  # type: ignore[return-value]

