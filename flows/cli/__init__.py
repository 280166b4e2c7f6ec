"""The `miniplm` command: demo, prepare, run, experiment, sql, export, report, status. It drives the flows, so it
lives beside them: a module per family of commands, the tables it prints in `tables`, the options the commands share
in `options`."""

from importlib import import_module

from flows.cli.app import app

# each module registers its commands; this order is the order of `miniplm --help`
for _module in ("pipeline", "experiment", "sql", "export", "workdir"):
    import_module(f"flows.cli.{_module}")

__all__ = ["app"]
