"""``unetlab compare``: the course's comparative claims, measured side by side.

>>> from unetlab.compare import load_spec, run_suite
>>> spec = load_spec("configs/compare_quick.yaml")
>>> rows = run_suite(spec, "models", "runs/compare")

Modules: :mod:`.spec` (the YAML), :mod:`.harness` (train + measure each entry, resume),
:mod:`.measure` (latency, memory), :mod:`.artifacts` (checkerboard score),
:mod:`.report` (CSV, Markdown), :mod:`.plots`.
"""

from .artifacts import blockiness_score, checkerboard_score, mean_checkerboard_score
from .harness import run_entry, run_suite
from .measure import measure_latency, measure_memory
from .report import markdown_table, write_csv, write_markdown
from .spec import SUITES, CompareSpec, Entry, load_spec, spec_from_dict

__all__ = ["SUITES", "CompareSpec", "Entry", "blockiness_score", "checkerboard_score", "load_spec",
           "markdown_table", "mean_checkerboard_score", "measure_latency", "measure_memory",
           "run_entry", "run_suite", "spec_from_dict", "write_csv", "write_markdown"]
