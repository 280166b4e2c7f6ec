"""The experiment's report, by job: statistics, the report's data (assemble), figures (plots), Markdown, and
writing it all (write)."""

from miniplm.experiment.report.write import write_experiment_report

__all__ = ["write_experiment_report"]
