"""The `miniplm` command's Typer app and its global option; each command lives in its own module beside it."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="MiniPLM Difference Sampling: score a corpus with a teacher and a reference LM, keep "
    "the best instances, train a student on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


DEBUG = {"on": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show Prefect's logs and full tracebacks")] = False,
) -> None:
    DEBUG["on"] = debug
