"""`miniplm export`: the kept corpus written where a trainer reads it (miniplm.selection.export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import DEBUG, app
from flows.cli.options import JsonOpt
from flows.cli.tables import err, out


@app.command()
def export(
    to: Annotated[Path, typer.Option("--to", help="Folder to write (it must not exist, unless --overwrite)")],
    workdir: Annotated[Path, typer.Option(help="Work directory")] = Path("miniplm-demo"),
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet, jsonl (text shards), hf (a datasets folder), tokens, megatron (Megatron-Core's indexed "
            "dataset), nanogpt (train.bin, val.bin, meta.pkl) or litdata (litgpt's optimized tokens)",
        ),
    ] = "parquet",
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Token formats: a tokenizer path or hub id, or train:N; default the teacher's own ids"),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="--format nanogpt: the fraction of kept instances (whole documents) in val.bin")
    ] = 0.005,
    block_size: Annotated[
        int, typer.Option(help="--format litdata: the TokensLoader block size training reads with (context + 1)")
    ] = 2049,
    selection: Annotated[str | None, typer.Option(help="A selection id (default: the current selection)")] = None,
    shuffle_seed: Annotated[int | None, typer.Option(help="Write in a shuffled order (default: best first)")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --to if it exists (once the new export is whole)")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Write the kept corpus where a trainer reads it: text shards, a datasets folder, or token files (flat, or
    Megatron-Core's and nanoGPT's own)."""
    from miniplm.selection.export import ExportError, export_selection
    from miniplm.store.models import ModelSpecError

    try:
        asked = {"val_fraction": val_fraction, "block_size": block_size}
        header = export_selection(workdir, to, format, tokenizer, selection, shuffle_seed, overwrite, **asked)
    except (ExportError, ModelSpecError, FileNotFoundError) as exc:
        if DEBUG["on"]:
            raise
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if json_output:
        print(json.dumps(header.file_json() | {"path": header.path}, default=str))
        return
    tokens = header.tokens
    what = f"{tokens.count:,} {tokens.dtype} tokens" if tokens else f"{header.text_bytes:,} bytes of text"
    out.print(
        f"wrote {header.path}: {header.instances:,} instances of selection {header.selection.selection_id}"
        f" ({what}, {header.format}, {header.order}) in {header.seconds:.1f} s"
    )
