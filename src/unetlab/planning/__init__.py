"""Planning a run for a dataset, a machine and a time budget (``unetlab plan``/``fit``).

    fp = compute_fingerprint(dataset, name="isbi2012")       # what the data looks like
    probe = probe_machine(depth=4, tile=192, batch=4, in_channels=1, num_classes=2)
    plan = make_plan(fp, probe, 1800, dataset="isbi2012", root="data/isbi2012")
    plan.config   # an ordinary config; plan.reasons: why each choice
"""

from .duration import parse_duration
from .fingerprint import Fingerprint, compute_fingerprint, format_fingerprint
from .planner import Plan, make_plan, probe_geometry, receptive_field
from .probe import probe_machine
from .render import render_plan

__all__ = ["Fingerprint", "Plan", "compute_fingerprint", "format_fingerprint", "make_plan",
           "parse_duration", "probe_geometry", "probe_machine", "receptive_field",
           "render_plan"]
