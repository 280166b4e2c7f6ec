"""Watch a folder and emit `miniplm.corpus.landed` when its corpus files change (new, changed, removed).

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python infra/watch.py /data/incoming [--every 10]

Files still being written are not announced until their size and mtime stop changing for one interval.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.rescore import folder_sources  # noqa: E402
from infra.rescore import LANDED_EVENT, folder_resource_id  # noqa: E402


def snapshot(folder: str) -> dict[str, tuple[int, int]]:
    return {p: (Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in folder_sources(folder)}


def announce(folder: str, files: list[str]) -> None:
    from prefect.events import emit_event

    emit_event(
        event=LANDED_EVENT, resource={"prefect.resource.id": folder_resource_id(folder)}, payload={"files": files}
    )
    print(f"emitted {LANDED_EVENT} for {folder}: {len(files)} files", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between looks")
    parser.add_argument("--max-looks", type=int, default=None, help="stop after this many looks (for tests)")
    args = parser.parse_args()
    announced, previous, looks = snapshot(args.folder), None, 0
    # Files already there are the baseline, not news: only what changes from now on is announced.
    print(f"watching {args.folder} ({len(announced)} files already there)", flush=True)
    while args.max_looks is None or looks < args.max_looks:
        time.sleep(args.every)
        looks += 1
        current = snapshot(args.folder)
        if current != announced and current == previous:  # changed, and settled since the last look
            announce(args.folder, sorted(current))
            announced = current
        previous = current


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C is how a watcher is stopped, not a failure
        print("stopped", flush=True)
