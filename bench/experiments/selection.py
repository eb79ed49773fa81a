"""Which registered methods each experiment runs, given the user's --method selection.

Each method declares the experiments it is a row of (`methods.base.MethodFacts.experiments`); an
analysis variant (Figure 6b's positions, the open-world stage, Figure 3's probes) also names the
methods it runs with (`runs_with`), so `--method learngene` brings them along. Nothing here knows a
method's name: a plug-in method that declares `experiments = {"table3"}` is a Table 3 row.
"""
from __future__ import annotations

from bench.profiles import episode_settings
from methods import registry
from methods.base import MethodFacts


def facts_of(name: str) -> MethodFacts:
    """A registered method's facts; the defaults for a name in the results whose method is not loaded
    now (a plug-in's rows, reported without its --plugin)."""
    try:
        return registry.facts(name)
    except registry.UnknownMethodError:
        return MethodFacts()


def paper_row(method: str) -> str:
    """The paper's row a method's numbers stand beside (`MethodFacts.paper_name`, else its name)."""
    return facts_of(method).paper_name or method


def methods_for(experiment: str, selected: list[str]) -> list[str]:
    """The methods `experiment` (or a panel of it, `fig6:position`) runs for the selection: the selected
    methods that declare it, in selection order, then the analysis variants that declare it and are
    selected or run with a selected method, in registry order."""
    facts = {m: facts_of(m) for m in selected}
    own = [m for m in selected if experiment in facts[m].experiments and not facts[m].runs_with]
    chosen = set(selected)
    variants = [m for m in registry.names() if experiment in (f := registry.facts(m)).experiments and f.runs_with
                and (m in chosen or f.runs_with & chosen)]
    return own + variants


def needs_ancestor(selected: list[str]) -> bool:
    """Whether any selected method reads the collective network (the ancestor of a learngene)."""
    return any(registry.facts(m).needs_ancestor for m in selected)


def with_role(role: str, names: list[str] | None = None) -> list[str]:
    """Registered methods (or those of `names` that are registered) playing `role` (`MethodFacts.roles`),
    in registry order (or the order of `names`)."""
    known = set(registry.names())
    return [m for m in (registry.names() if names is None else names) if m in known and role in registry.facts(m).roles]


def headline() -> str:
    """The method the summary compares the others with (the paper's method); it also labels the rows of
    the collective run it inherits from (Figure 3's ρ)."""
    found = with_role("headline")
    if len(found) != 1:
        raise ValueError(f"exactly one registered method must have the role 'headline', found {found}")
    return found[0]


def artifact_seeds(profile: dict) -> list[int]:
    """Seeds whose collective model differs: every seed when artifacts are per cell, else one."""
    return episode_settings(profile).artifact_seeds()
