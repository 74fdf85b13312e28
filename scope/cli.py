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


def _command():
    """The click command tree, with every float option refusing NaN and infinity."""
    import math

    import typer.main

    from hardware_profiles.errors import ScopeError

    class UsageProblem(ScopeError):
        exit_code = 2  # a usage error, like the framework's own

    command = typer.main.get_command(app)

    def walk(cmd):
        yield cmd
        for sub in getattr(cmd, "commands", {}).values():
            yield from walk(sub)

    for cmd in walk(command):
        for param in cmd.params:
            desc = getattr(param, "type_descriptor", None)
            if desc is None or "float" not in str(desc.annotation):
                continue

            def finite(ctx, value, _param=param, _process=param.process_value):
                # before the conversion, whose range check would misreport a NaN
                values = value if isinstance(value, list | tuple) else [value]
                for v in values:
                    if isinstance(v, float | str) and not math.isfinite(_as_float(v)):
                        raise UsageProblem(
                            f"{_option_name(_param)} must be a finite number, got {float(v)}"
                        )
                return _process(ctx, value)

            param.process_value = finite
    return command


def _as_float(value: float | str) -> float:
    """``value`` as a float; 0 for text that is no number (the conversion reports it)."""
    try:
        return float(value)
    except ValueError:
        return 0.0


def _option_name(param) -> str:
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if opts:
        return max(opts, key=len)
    if getattr(param, "param_type_name", "") == "argument":
        return (param.metavar or param.name or "argument").upper()
    return (getattr(param, "opts", None) or [param.name])[0]


def _typed_value(param, args: list[str]) -> str | None:
    """The value the user typed for ``param`` (last occurrence), for error messages."""
    names = set(getattr(param, "opts", [])) | set(getattr(param, "secondary_opts", []))
    found = None
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            found = args[i + 1]
        elif "=" in a and a.split("=", 1)[0] in names:
            found = a.split("=", 1)[1]
    return found


_BOUNDS = {
    "greater_than_equal": ("ge", "≥"),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "≤"),
    "less_than": ("lt", "<"),
}


def _usage_line(err, args: list[str]) -> str:
    """A click usage error as one line in scope's style, with the option as typed."""
    import difflib

    from typer._click import exceptions as ce

    ctx = getattr(err, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    if isinstance(err, ce.MissingParameter):
        if err.param is not None:
            return f"{_option_name(err.param)} is required{where}"
        return f"{err.format_message()}{where}"
    if isinstance(err, ce.NoSuchOption):
        known = []
        if ctx is not None:
            known = [o for p in ctx.command.params for o in getattr(p, "opts", [])]
        close = list(err.possibilities or []) or difflib.get_close_matches(err.option_name, known)
        hint = f" (did you mean {close[0]}?)" if close else where
        return f"no such option {err.option_name}{hint}"
    if isinstance(err, ce.BadParameter) and err.param is not None:
        param = err.param
        name = _option_name(param)
        typed = _typed_value(param, args)
        desc = getattr(param, "type_descriptor", None)
        choices = getattr(desc, "choices", None) if desc is not None else None
        if choices:
            values = [getattr(c, "value", c) for c in choices]
            got = f"; got {typed!r}" if typed is not None else ""
            return f"{name} must be one of {', '.join(map(str, values))}{got}"
        cause = err.__cause__
        errors = cause.errors() if hasattr(cause, "errors") else []
        if errors:
            e = errors[0]
            got = typed if typed is not None else e.get("input")
            bound = _BOUNDS.get(e.get("type", ""))
            if bound and bound[0] in (e.get("ctx") or {}):
                return f"{name} must be {bound[1]} {e['ctx'][bound[0]]}, got {got}"
            if "parsing" in e.get("type", ""):
                kind = "an integer" if "int" in e["type"] else "a number"
                return f"{name} must be {kind}, got {got!r}"
            return f"{name}: {e.get('msg', err.format_message())}, got {got!r}"
        return f"{name}: {err.format_message()}"
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    m = __import__("re").match(r"No such command '([^']+)'", message)
    if m and ctx is not None:
        names = sorted(getattr(ctx.command, "commands", {}))
        close = difflib.get_close_matches(m.group(1), names)
        hint = f" (did you mean {close[0]}?)" if close else f" (commands: {', '.join(names)})"
        return f"no such command {m.group(1)!r}{hint}"
    message = message.rstrip(".")
    return (message[:1].lower() + message[1:] + where) if message else "usage error" + where


def _os_error_line(err: OSError) -> str:
    """A file-system error (full disk, no permission, read-only) as one line with the fix."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{where}; free some space and run the command again"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where}: {err.strerror}; choose a folder you can write to"
    if err.errno == errno.ENOENT:
        return f"no such file or folder{where}"
    return f"{err.strerror or err}{where}"


def _validation_line(err) -> str:
    """A pydantic ValidationError of an options model as one line naming the option."""
    e = err.errors()[0]
    loc = [str(x) for x in e.get("loc", ()) if not isinstance(x, int)]
    name = "--" + loc[-1].replace("_", "-") if loc else "an option"
    got = e.get("input")
    bound = _BOUNDS.get(e.get("type", ""))
    if bound and bound[0] in (e.get("ctx") or {}):
        return f"{name} must be {bound[1]} {e['ctx'][bound[0]]}, got {got}"
    return f"{name}: {e.get('msg', 'invalid value')}, got {got!r}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scope`` console script."""
    from typer._click import exceptions as ce

    from hardware_profiles.errors import ScopeError

    args = sys.argv[1:] if argv is None else list(argv)
    _state["debug"] = "--debug" in args
    try:
        rv = _command().main(args=args, prog_name="scope", standalone_mode=False)
    except ScopeError as err:
        if _state["debug"]:
            raise
        _error_line(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return err.exit_code
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        _error_line("interrupted; nothing was left half-written (finished work is kept)")
        return 130
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        _error_line("aborted")
        return 1
    except ce.ClickException as err:
        if _state["debug"]:
            raise
        _error_line(_usage_line(err, args))
        return err.exit_code
    except OSError as err:
        if _state["debug"]:
            raise
        _error_line(_os_error_line(err))
        return 1
    except Exception as err:
        if _state["debug"]:
            raise
        if type(err).__name__ == "ValidationError" and hasattr(err, "errors"):
            _error_line(_validation_line(err))  # a settings model refused an option
            return 2
        first = str(err).splitlines()[0] if str(err) else ""
        _error_line(f"unexpected {type(err).__name__}: {first} (run with --debug for details)")
        return 2
    if rv == 130:  # typer turns Ctrl-C into Exit(130) and returns it in this mode
        _error_line("interrupted; nothing was left half-written (finished work is kept)")
        return 130
    return rv if isinstance(rv, int) else 0


def run() -> None:
    code = main()
    from acquisition.files import quarantined

    if quarantined():  # an HDF5 file met a full disk: freeing it would crash HDF5
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
