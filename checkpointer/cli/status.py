"""`ckpt status`: the page delivery of lazy restores (`ckpt restore --lazy`), which goes on in a
background supervisor after the restore returned: its state, the memory in so far, and why it
failed, with the exit code."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from .. import ui
from ..errors import NotFound
from .app import app, home, size
from .options import Json

if TYPE_CHECKING:
    from ..porcelain.deliveries import DeliveryView


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(
        help="A container restored with --lazy (default: every lazy restore ckpt knows of).")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait until every page is in (or delivery failed: then exit with its code).")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="With --wait: give up after SECONDS "
                                                                           "(exit 1 if still under way).")] = None,
    as_json: Json = False,
) -> None:
    """Show lazy restores' page delivery: state (starting, ready, serving, complete, failed, exited,
    lost), the memory in so far, and the error with its exit code. A failed delivery killed its
    container; `ckpt fsck --repair` removes the records of finished ones."""
    from ..porcelain.deliveries import list_deliveries, wait_for

    views = list_deliveries(home(), name)
    if name is not None and not views:
        raise NotFound(f"no lazy restore of {name!r} here", hint="`ckpt status` lists every lazy restore")
    if name is not None:
        views = views[-1:]  # the latest restore of that container
    if wait:
        with ui.progress(not as_json) as on_progress:
            views = wait_for(views, on_progress=on_progress, timeout=timeout)
    if as_json:
        ui.print_json([v.to_json() for v in views])
    else:
        show(views)
    if wait:
        for view in views:
            if (error := view.error()) is not None:
                raise typer.Exit(error.exit_code)
            if not view.final:
                raise typer.Exit(1)


def follow(delivery: str, *, display: bool) -> DeliveryView:
    """Wait until the delivery `delivery` (an id, RestoreResult.delivery) ended, with a progress bar."""
    from ..porcelain.deliveries import LAZY_DIR, read_delivery, wait_for

    view = read_delivery(home().root / LAZY_DIR / delivery)
    with ui.progress(display) as on_progress:
        (view,) = wait_for([view], on_progress=on_progress)
    if display:
        show([view])
    return view


def show(views: list[DeliveryView]) -> None:
    if not views:
        ui.err.print("no lazy restores")
        return
    now = time.time()
    for view in views:
        st = view.status
        if st is not None and st.total_bytes:
            pages = f"{size(st.served_bytes)} of {size(st.total_bytes)} in ({100 * st.served_bytes // st.total_bytes}%)"
        else:
            pages = "-"
        fetched = f", {size(st.fetched_bytes)} fetched" if st is not None and st.fetched_bytes else ""
        end = (st.finished if st is not None and st.finished else now) if view.started else None
        took = f", {end - view.started:.1f} s" if end is not None else ""
        ui.out.print(f"{view.container or view.id:<24} {view.state:<9} {pages}{fetched}{took}")
        if view.state == "exited":
            ui.out.print("  the container ended on its own before every page was in")
        if (error := view.error()) is not None:
            ui.out.print(f"  [red]error[/] (exit {error.exit_code}): {ui.escape(str(error))}")
            if error.hint:
                ui.out.print(f"  hint: {ui.escape(error.hint)}")
