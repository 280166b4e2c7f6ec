"""What an export wrote: `export.json` (the header a trainer or a later run reads) and what each format's writer
reports of its files. Typed so that the CLI, the pipeline's export step, its Prefect artifact and the run summary read
the same fields; `export.json` keeps its keys (`ExportHeader.file_json`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_serializer

from miniplm.selection.select import SelectionRecord
from miniplm.store.manifest import ModelRef

# keys a token export's header has only for the formats that write them
_FORMAT_ONLY = ("documents", "split", "block_size")


class TokenHeader(BaseModel):
    """A token export's ids: in which tokenizer, which dtype, how many, and how to read each file."""

    tokenizer: str
    tokenizer_path: str | None
    vocab_size: int
    eos_token_id: int | None
    dtype: str
    count: int
    files: dict[str, str]
    documents: int | None = None
    split: dict[str, dict[str, int]] | None = None
    block_size: int | None = None

    @model_serializer(mode="wrap")
    def _only_the_formats_keys(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _FORMAT_ONLY}


class ExportHeader(BaseModel):
    """One export: what was written, in which order, and where it came from (`export.json`, and `path`: where)."""

    format: str
    files: list[str]
    instances: int
    teacher_tokens: int
    text_bytes: int | None  # None: a token export in the teacher's own ids decodes no text
    order: str  # "rank" (best first) or "shuffled"
    shuffle_seed: int | None
    columns: list[str] | None  # the text formats' columns
    tokens: TokenHeader | None  # the token formats' ids
    selection: SelectionRecord
    workdir: str
    workdir_id: str
    teacher: ModelRef
    reference: ModelRef | None
    miniplm_version: str
    created_at: str
    seconds: float
    path: str | None = None  # where the export is (not in export.json, which is in it)

    def file_json(self) -> dict[str, Any]:
        """What export.json holds: the selection's time in ISO form, as it always was."""
        data = self.model_dump(exclude={"path"})
        data["selection"]["created_at"] = self.selection.created_at.isoformat()
        return data
