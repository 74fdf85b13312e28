"""The `scope` command line: thin commands that parse, call the library and render.

Heavy libraries (torch, cv2, h5py, pymmcore-plus) are imported inside the commands so that
``scope --help`` stays instant. Expected problems raise :class:`ScopeError` and print as one
red line with a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from scope._version import __version__
from scope.commands import COMMAND_MODULES

app = typer.Typer(
    name="scope",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="Virtual staining of blood smears on an LED-array microscope: "
    "scan → match → train → stain.",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    _state["debug"] = debug


for _module in COMMAND_MODULES:
    _module.register(app)


def _error_line(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {message}", markup=True
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scope`` console script."""
    from hardware_profiles.errors import ScopeError

    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args
    try:
        app(args=args, prog_name="scope", standalone_mode=False)
    except ScopeError as err:
        if _state["debug"]:
            raise
        _error_line(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return err.exit_code
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        _error_line("interrupted")
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        _error_line("aborted")
        return 1
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.ClickException):
            err.show()
            return err.exit_code
        if _state["debug"]:
            raise
        _error_line(f"unexpected {type(err).__name__}: {err} (run with --debug for details)")
        return 2
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
