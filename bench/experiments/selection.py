"""Which registered methods each experiment runs, given the user's --method selection.

Learngene has analysis variants (open-world stage, Figure 6b positions) that belong to one
experiment each; the tables compare the main methods on the same episodes.
"""
from __future__ import annotations

from bench.profiles import episode_settings

FIG6B_VARIANTS = ("learngene-front", "learngene-middle", "learngene-top-uniform")
OPEN_WORLD_VARIANT = "learngene-openworld"
#: Feature probes of the collective model (methods/learngene/probe.py): Figure 3's analysis rows.
PROBES = ("collective-ncm", "collective-ncm-random")
# Variants that are not rows of Table 3 (they belong to another experiment or duplicate `learngene`).
NOT_IN_TABLE3 = {*FIG6B_VARIANTS, OPEN_WORLD_VARIANT, "learngene-ewc1000", *PROBES}


def table3_methods(selected: list[str]) -> list[str]:
    return [m for m in selected if m not in NOT_IN_TABLE3]


def table2_methods(selected: list[str]) -> list[str]:
    """Baselines and scratch test directly on open-world classes; learngene's row is the variant whose
    collective model recognised and learnt those classes first (reconstructed protocol)."""
    out = [m for m in selected if not m.startswith("learngene") and m not in PROBES]
    if OPEN_WORLD_VARIANT in selected or "learngene" in selected:
        out.append(OPEN_WORLD_VARIANT)
    return out


def fig6b_methods(selected: list[str]) -> list[str]:
    if "learngene" in selected:
        return list(FIG6B_VARIANTS)
    return [m for m in FIG6B_VARIANTS if m in selected]


def artifact_seeds(profile: dict) -> list[int]:
    """Seeds whose collective model differs: every seed when artifacts are per cell, else one."""
    return episode_settings(profile).artifact_seeds()


def probe_methods(selected: list[str]) -> list[str]:
    """The collective-feature probes run whenever learngene does (they read its collective model)."""
    if "learngene" in selected:
        return list(PROBES)
    return [m for m in PROBES if m in selected]
