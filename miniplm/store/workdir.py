"""Where everything of one run lives. Every path the pipeline writes is named here.

Bulk data is Parquet shards in a stable folder layout, so the catalog's views are a handful of globs whatever
the number of shards. Folder names carry what the shards are keyed by (`source_key=...`, `model_fp=...`), which
DuckDB reads as columns (hive partitioning) and uses to skip the files of sources no longer in the corpus.
Temporary files end in `.tmp`, never `.parquet`, so no glob ever sees half a shard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path


def part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


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

    # documents and quarantined rows: documents/source_key=<key>/part-00000.parquet, ...
    def documents_dir(self, source_key: str) -> Path:
        return self.root / "documents" / f"source_key={source_key}"

    def documents(self, source_key: str, part: int) -> Path:
        return self.documents_dir(source_key) / part_name(part)

    def ingest_stats(self, source_key: str) -> Path:
        """Written last by ingest: a source without it is unfinished and is read again."""
        return self.documents_dir(source_key) / "_stats.json"

    def quarantine_dir(self, source_key: str) -> Path:
        return self.root / "quarantine" / f"source_key={source_key}"

    # instances and splits mirror the documents' parts
    def instances_dir(self, instance_spec: str, source_key: str) -> Path:
        return self.root / "instances" / f"spec={instance_spec}" / f"source_key={source_key}"

    def instances(self, instance_spec: str, source_key: str, part: int) -> Path:
        return self.instances_dir(instance_spec, source_key) / part_name(part)

    def splits(self, split_key: str, source_key: str, part: int) -> Path:
        return self.root / "splits" / f"split_key={split_key}" / f"source_key={source_key}" / part_name(part)

    # scores: one folder per model fingerprint and score variant (dtype, scorer version), then per instance shard
    def scores_dir(self, model_fp: str, variant: str) -> Path:
        return self.root / "scores" / f"model_fp={model_fp}" / f"variant={variant}"

    def partition_scores_dir(self, model_fp: str, variant: str, source_key: str, part: int) -> Path:
        return self.scores_dir(model_fp, variant) / f"source_key={source_key}" / f"part={part:05d}"

    def plans_dir(self, model_fp: str, variant: str) -> Path:
        """Which candidates each scoring partition holds, written by the plan step for one run."""
        return self.root / "plans" / f"model_fp={model_fp}" / f"variant={variant}"

    def selection(self, selection_id: str) -> Path:
        return self.root / "selections" / f"{selection_id}.parquet"

    def selected(self, selection_id: str) -> Path:
        return self.root / "selected" / f"{selection_id}.parquet"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def reference_dir(self) -> Path:
        return self.models / "reference"

    @property
    def registry_file(self) -> Path:
        """Every model that ever scored here: fingerprint -> role, spec, path (for the `models` view)."""
        return self.models / "registry.json"

    def catalog_table(self, name: str) -> Path:
        """One of the catalog's small tables (the run's settings, sources, models), for `views.sql` to read."""
        return self.root / "catalog" / f"{name}.parquet"

    @property
    def manifest(self) -> Path:
        """The current run's inputs: which sources are live, which models score them."""
        return self.root / "manifest.json"

    @property
    def run_config(self) -> Path:
        """The last run's configuration (a PipelineConfig), which `miniplm status` asks each step about."""
        return self.root / "config.json"

    @property
    def summary(self) -> Path:
        """The last run's summary (what `miniplm run --json` printed), for `miniplm report`."""
        return self.root / "summary.json"

    @property
    def histogram_png(self) -> Path:
        """The candidates' score histogram with the selection's threshold, drawn at the end of every run."""
        return self.root / "report" / "scores.png"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def views_sql(self) -> Path:
        return self.root / "views.sql"
