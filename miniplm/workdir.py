"""Where everything of one run lives. Every path the pipeline writes is named here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def create(cls, root: str | Path) -> Workdir:
        wd = cls(Path(root).expanduser().resolve())
        wd.root.mkdir(parents=True, exist_ok=True)
        if not wd.id_file.exists():
            wd.id_file.write_text(uuid.uuid4().hex)
        return wd

    @classmethod
    def open(cls, root: str | Path) -> Workdir:
        wd = cls(Path(root).expanduser().resolve())
        if not wd.id_file.exists():
            raise FileNotFoundError(
                f"{wd.root} is not a miniplm work directory (no {wd.id_file.name}); run `miniplm run` first"
            )
        return wd

    @property
    def id_file(self) -> Path:
        return self.root / ".miniplm-id"

    @property
    def identity(self) -> str:
        """Changes when the work directory is wiped and recreated, so cached steps do not point into the void."""
        return self.id_file.read_text().strip()

    # bulk data, as immutable Parquet shards
    def documents(self, source_key: str) -> Path:
        return self.root / "documents" / f"{source_key}.parquet"

    def quarantine(self, source_key: str) -> Path:
        return self.root / "quarantine" / f"{source_key}.parquet"

    def ingest_stats(self, source_key: str) -> Path:
        return self.root / "documents" / f"{source_key}.stats.json"

    def instances(self, instance_spec: str, source_key: str) -> Path:
        return self.root / "instances" / instance_spec / f"{source_key}.parquet"

    def splits(self, split_key: str, source_key: str) -> Path:
        return self.root / "splits" / split_key / f"{source_key}.parquet"

    def scores_dir(self, model_fp: str) -> Path:
        return self.root / "scores" / model_fp

    def selection(self, selection_id: str) -> Path:
        return self.root / "selections" / f"{selection_id}.parquet"

    def selected(self, selection_id: str) -> Path:
        return self.root / "selected" / f"{selection_id}.parquet"

    def export_dir(self, name: str) -> Path:
        return self.root / "exports" / name

    def student_dir(self, name: str) -> Path:
        return self.root / "students" / name

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def reference_dir(self) -> Path:
        return self.models / "reference"

    @property
    def registry_file(self) -> Path:
        """Every model that ever scored here: fingerprint -> role, spec, path (for the `scores` view)."""
        return self.models / "registry.json"

    @property
    def manifest(self) -> Path:
        """The current run's inputs: which shards are live, which models score them."""
        return self.root / "manifest.json"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def views_sql(self) -> Path:
        return self.root / "views.sql"
