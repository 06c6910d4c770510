"""Stage 3 of loading a sweep spec: each [[variant]] table expanded into its cases x grid values.

expand_spec is a pure function of the checked spec (speccheck.CheckedSpec).  What only the
expansion shows is refused here, with its line: a variant name too long or invalid once its case
and grid values are joined to it, two variants of one name (or of names differing only in case),
and an init_from that names no earlier variant.
"""

from __future__ import annotations

import dataclasses
import itertools

from experiments.sweep.speccheck import CheckedSpec, VariantTable, check_name, distinct_ignoring_case
from experiments.sweep.specparse import SpecSource
from experiments.sweep.spectypes import Spec, Variant, slug


def expand_spec(checked: CheckedSpec) -> Spec:
    """The Spec: every variant table expanded, in order; variant names distinct."""
    src = checked.source
    variants: list[Variant] = []
    known: set[str] = set()  # the names init_from may refer to (a set: one lookup per table)
    for table in checked.tables:
        if table.init_from and table.init_from not in known:
            src.fail(f"{table.where}init_from", f"{table.init_from!r} is not an earlier variant")
        made = expand_table(src, table)
        variants += made
        known.update(v.name for v in made)
    seen: set[str] = set()  # a set, not names.count(n) per name: linear in the number of variants
    for v in variants:
        if v.name in seen:
            src.fail("name", f"two variants are named {v.name!r}")
        seen.add(v.name)
    distinct_ignoring_case(src, "name", [v.name for v in variants], "variants")
    return Spec(name=checked.name, path=src.path, description=checked.description,
                budget_minutes=checked.budget_minutes, seeds=checked.seeds, jobs=checked.jobs,
                variants=tuple(variants), evals=checked.evals, metrics=checked.metrics, plot_x=checked.plot_x)


def expand_table(src: SpecSource, table: VariantTable) -> list[Variant]:
    """One table's variants: for each case, each combination of its grid values, named
    NAME[.CASE][.key=value...] (a case without a name is labelled by its values)."""
    keys = [k for k, _ in table.grid]
    out = []
    for case in table.cases:
        label = case.name or ".".join(f"{k.partition('.')[2]}={slug(v)}" for k, v in case.sets)
        for combo in itertools.product(*(vals for _, vals in table.grid)) if keys else [()]:
            params = case.sets + tuple(zip(keys, combo))
            vname = table.name + (f".{label}" if label else "") + "".join(
                f".{k.partition('.')[2]}={slug(v)}" for k, v in zip(keys, combo))
            check_name(src, f"{table.where}name", vname, "variant name (with its case and grid values)",
                       near=table.name)
            run = dataclasses.replace(table.run, sets=table.run.sets + params)
            out.append(Variant(vname, run, table.seeds, table.init_from, params))
    return out
