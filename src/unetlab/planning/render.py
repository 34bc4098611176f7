"""A plan as an ordinary YAML config with a comment above each choice saying why."""

from __future__ import annotations

import textwrap

import yaml

from .fingerprint import Fingerprint, format_fingerprint
from .planner import Plan


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return text


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 96 - len(indent))]


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _input_times(probe: dict) -> dict:
    """Seconds to augment a tile, by preset (older probes: one time, its preset if known)."""
    times = probe.get("input_s_by_preset")
    if isinstance(times, dict) and times:
        return times
    one = probe.get("input_s_per_tile")
    return {(probe.get("input_for") or {}).get("preset", "measured"): one} if one else {}


def render_plan(plan: Plan, fp: Fingerprint, probe: dict, budget_s: float) -> str:
    """The YAML text of ``plan`` (``unetlab train`` reads it as it is)."""
    rates = ", ".join(f"{w}: {v:.2f}" for w, v in probe["steps_per_s"].items())
    e = plan.expected
    head = [f"unetlab plan: {fp.dataset}, budget {format_duration(budget_s)} "
            f"({budget_s:.0f}s) on the {probe['device']}",
            *format_fingerprint(fp).splitlines(),
            f"probe: steps/s by base width {{{rates}}} at {probe['tile']}px tiles, batch "
            f"{probe['batch']}, {probe.get('amp', 'none')}"
            f"{' channels-last' if probe.get('channels_last') else ''} "
            f"({'cached' if probe.get('cached') else 'measured'})",
            *(["input pipeline, ms to augment one tile in one process: " + ", ".join(
                f"{k} {v * 1000:.1f}" for k, v in _input_times(probe).items() if v)]
              if _input_times(probe) else []),
            f"expected: ~{e['steps']} steps, ~{e['epochs']} epochs, {e['passes']} passes "
            f"over the training pixels, {e['validations']} validations",
            "Edit freely: this is an ordinary config (unetlab train PLAN.yaml)."]
    lines = [f"# {h.strip()}" for h in head]
    for section, values in plan.config.items():
        lines.append("")
        lines += _comment(plan.reasons[section], "") if section in plan.reasons else []
        lines.append(f"{section}:")
        for key, value in values.items():
            reason = plan.reasons.get(f"{section}.{key}")
            if reason:
                lines += _comment(reason, "  ")
            lines.append(f"  {key}: {_flow(value)}")
    return "\n".join(lines) + "\n"
