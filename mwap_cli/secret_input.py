"""Secrets given to a command: from a file, standard input, the environment or a hidden prompt,
never from argv (readable by every local user through ``ps`` and kept in shell history)."""

import os
import sys
from collections.abc import Callable
from typing import TextIO

import click

MAX_SECRET_CHARS = 16_384


def secret_option(name: str, envvar: str, what: str, *, required: bool) -> Callable[[Callable], Callable]:
    """``--<name>-file PATH`` (``-``: standard input) for a secret, plus a hidden ``--<name>`` that
    refuses any value: argv is readable by every local user (``ps``, ``/proc/<pid>/cmdline``) and
    shells keep it in history. ``read_secret`` falls back to ``envvar``, then a hidden prompt."""
    dest = name.replace("-", "_")

    def refuse(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            raise click.UsageError(
                f"--{name} does not take the {what} on the command line (other users see it in `ps`, "
                f"shells keep it in history): set {envvar}, or pass --{name}-file PATH, "
                f"or --{name}-file - to read it from standard input",
                ctx=ctx,
            )

    prompt = " On a terminal, it is asked for (hidden) when neither is given." if required else ""

    def decorate(command: Callable) -> Callable:
        command = click.option(
            f"--{name}-file",
            f"{dest}_file",
            type=click.File("r", encoding="utf-8", lazy=False),
            help=f"Read the {what} from this file ('-': standard input); or set {envvar}.{prompt}",
        )(command)
        return click.option(f"--{name}", hidden=True, expose_value=False, is_eager=True, callback=refuse)(
            command
        )

    return decorate


def read_secret(source: TextIO | None, name: str, envvar: str, what: str, *, required: bool) -> str | None:
    """The secret from ``--<name>-file``, else ``envvar``, else a hidden prompt on a terminal."""
    if source is not None:
        where = "standard input" if source.name in ("-", "<stdin>") else "the file"
        value = source.read(MAX_SECRET_CHARS + 1)
        if len(value) > MAX_SECRET_CHARS:
            raise click.UsageError(f"--{name}-file: {where} holds more than {MAX_SECRET_CHARS} characters")
        value = value.strip("\r\n")
        if not value:
            raise click.UsageError(f"--{name}-file: {where} is empty")
        return value
    from_env = os.environ.get(envvar)
    if from_env:
        return from_env
    if not required:
        return None
    if sys.stdin.isatty():
        return click.prompt(what[:1].upper() + what[1:], hide_input=True)
    raise click.UsageError(
        f"the {what} is needed: set {envvar}, or pass --{name}-file PATH (or - for standard input)"
    )


def _one_stdin(*sources: TextIO | None) -> None:
    if sum(1 for source in sources if source is not None and source.name in ("-", "<stdin>")) > 1:
        raise click.UsageError("only one secret can come from standard input")


def read_tokens(access_file: TextIO | None, refresh_file: TextIO | None) -> tuple[str, str | None]:
    """An integration's access token (required) and refresh token (optional)."""
    _one_stdin(access_file, refresh_file)
    access = read_secret(
        access_file, "access-token", "MWAP_INTEGRATION_ACCESS_TOKEN", "access token", required=True
    )
    refresh = read_secret(
        refresh_file, "refresh-token", "MWAP_INTEGRATION_REFRESH_TOKEN", "refresh token", required=False
    )
    return str(access), refresh
