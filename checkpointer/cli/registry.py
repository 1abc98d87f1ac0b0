"""`ckpt login` and `ckpt logout`."""
from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Annotated

import typer

from .. import ui
from .app import app
from .options import Json, RegistryNoJobs, grouped


@app.command()
@grouped
def login(
    host: Annotated[str, typer.Argument(help="Registry host[:port].")],
    username: Annotated[str, typer.Option("--username", "-u", prompt=True, help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from standard input.")] = False,
    *, registry: RegistryNoJobs, as_json: Json = False,
) -> None:
    """Check credentials against a registry and store them where ckpt looks first: $REGISTRY_AUTH_FILE
    if set, else the docker config.json (or the credential helper it names)."""
    from ..registry import login as do_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    result = do_login(host, username, password, insecure=registry.insecure, ca_dir=registry.ca_dir)
    if as_json:
        ui.print_json(asdict(result))
        return
    ui.out.print(f"login succeeded; credentials stored in {ui.escape(result.stored_in)}")
    ui.out.print(f"credentials for {ui.escape(host)} used from {ui.escape(str(result.used_from))}")
    if result.used_from != result.stored_in:
        ui.err.print(f"[bold yellow]WARNING[/]: ckpt takes the credentials for {ui.escape(host)} from "
                     f"{ui.escape(str(result.used_from))}, not from what was just stored")


@app.command()
def logout(host: Annotated[str, typer.Argument(help="Registry host[:port].")], as_json: Json = False) -> None:
    """Forget the credentials stored for a registry where `ckpt login` puts them."""
    from ..registry import logout as do_logout

    result = do_logout(host)
    if as_json:
        ui.print_json(asdict(result))
        return
    name = ui.escape(host)
    ui.out.print(f"removed credentials for {name} from {ui.escape(result.removed_from)}" if result.removed_from
                 else f"no credentials stored for {name} where `ckpt login` puts them")
    if result.used_from:
        ui.out.print(f"credentials for {name} are still used from {ui.escape(result.used_from)}")
