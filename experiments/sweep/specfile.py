"""Sweep spec files: one TOML file describes a grid of runs, its evals and its report.

    name = "addition_formats"              # default: the file's stem
    description = "plain vs reversed answers ..."
    budget_minutes = 20                    # the CPU time it is meant to take (reported)
    seeds = [1, 2]
    jobs = 2                               # runs at a time (each gets cores / jobs threads)

    [base]                                 # what every variant starts from
    task = "addition"
    preset = "addition"
    steps = 1500
    target_acc = 0                         # 0: always train all steps
    set = { "task.max_digits" = 3 }        # like --set
    device = "cuda"                        # like --device (default auto)
    resources = { num_cpus = 2, num_gpus = 0.25 }  # what one run asks of an executor (below)

    [[variant]]
    name = "format"
    grid = { "task.reverse_answer" = [true, false], "task.mask_prompt" = [true, false] }

    [[variant]]
    name = "finetune"
    init_from = "pretrain"                 # an earlier variant: start from its run of the same seed
    set = { "train.lr" = 3e-4 }

    [[eval]]                               # scored on every finished run
    split = "test"
    n = 2000
    by = ["a_digits"]
    set = { "task.ood_sampling" = "any" }  # evaluation-only task changes
    heatmap = "digits"                     # evals sharing a heatmap name are drawn in one plot

    [report]
    metrics = ["test.accuracy", "val_loss", "steps", "train_time", "steps_to:val_acc>=0.99"]
    plot_x = "task.train_size"             # also plot each metric against this variant key

A variant's keys override base's; `grid` expands one variant into the product of its
values, and `cases = [{...}, {...}]` into a list of alternatives (each a table of
section.key = value with an optional `name`; `{}` is the variant itself).  Errors name the file, the line and the key.

A spec expands to at most MAX_RUNS = 10,000 runs: the sum over its [[variant]] tables of
(product of the grid's value counts) x cases x seeds, counted before any variant is made (more
is refused in one line: trim the grids or split the spec).  A spec file is UTF-8 TOML of at most
4 MiB (MAX_SPEC_BYTES), nested no deeper than the parser's stack allows (a few hundred levels).

`resources` (in base or a variant): `num_cpus` is the run's thread count (OMP_NUM_THREADS) and
the CPUs Ray reserves for it; `num_gpus` (Ray only) the GPUs it reserves, a share of one (at
most 1) or a whole number. Without it, `--per-gpu K` reserves 1/K, and `device = "cuda"` a
whole GPU; Ray shows a run no GPU at all if it reserves none. The local executor shares out
GPUs with `--gpus` and `--per-gpu` instead.

A spec is code, not data: `include = "my_task.py"` or a list of files (like `workbench train --include`)
imports and so executes that Python file, in `workbench run` and in every training and
eval subprocess it starts. Run only specs whose includes you trust.

Names become folder and file names: the spec's `name` (runs/spec-NAME), variant names
(VARIANT/seedS), case names and grid keys and values (joined into variant names as
`.key=value`), eval names (eval-NAME.json), heatmap names (heatmap-NAME.png) and plot_x
(METRIC-vs-X.png). Each must be 1 to 128 ASCII letters, digits and `_ . - = , +`, not
starting with `.` or `-` (so never `.` or `..`): no path separators (`/`, `\\`, or look-alikes
such as U+2215), no spaces, control characters or NUL. Variant, eval and heatmap names that
differ only in case are refused too: on a case-insensitive file system (macOS, Windows) they
would share a file. A spec named by its file (no `name` key) is not checked: its stem is one
existing file name, and it is always prefixed by `spec-`. Seeds must be integers (seedS).

Loading is three stages, each a function of the one before's result, each testable alone:
specparse.parse_spec (bytes -> TOML table), speccheck.check_spec (keys, types, ranges, names;
tables as written) and specexpand.expand_spec (grid x cases -> variants).  Then, before anything
runs, validate_against_registry resolves every variant's settings (tasks, presets, keys, and
their values' ranges such as target_acc's, which TrainConfig owns), as its runs will resolve
them (resolve_variant).  Not to be confused with experiments/runspec.py, the settings of one run.
"""


from __future__ import annotations

from pathlib import Path

from experiments.errors import UserError
from experiments.runspec import RunSpec, resolve_run
from experiments.sweep.speccheck import check_spec
from experiments.sweep.specexpand import expand_spec
from experiments.sweep.specparse import SpecSource, read_spec
from experiments.sweep.spectypes import Spec, Variant


def load_spec(path: Path) -> Spec:
    """Read, check and expand a spec file; UserError (file:line: key: why) on any problem.  A spec
    may expand to at most MAX_RUNS runs (variants x seeds), checked before any variant is made."""
    return expand_spec(check_spec(read_spec(Path(path))))


def resolve_variant(v: Variant, seed: int, init_dir: Path | None = None, model_keys: bool = True) -> RunSpec:
    """The RunSpec of a variant's run with this seed, from the spec's typed values (runspec.resolve_run):
    what `workbench run` hands that run's `workbench train`.  init_dir: the run it starts from.
    Without model_keys, the model.* values are left out (a fine-tuning variant checked before
    its source run exists, whose model they change)."""
    s = v.run
    sets = s.sets if model_keys else tuple((k, val) for k, val in s.sets if not k.startswith("model."))
    return resolve_run(s.task, s.preset, sets, s.steps, seed, s.include, init_dir, s.target_acc)


def validate_against_registry(spec: Spec) -> None:
    """Unknown tasks, presets and keys, and values their configs refuse, are caught before anything
    runs (file:line: variant NAME: why)."""
    # the text only places errors: a file changed since load_spec must not fail here instead
    src = SpecSource(spec.path, spec.path.read_text(encoding="utf-8", errors="replace"), {})
    for v in spec.variants:
        try:  # a fine-tuning variant's model comes from its source run: its task and train keys only
            resolve_variant(v, spec.seeds[0], model_keys=not v.init_from)
        except UserError as e:
            raise UserError(f"{spec.path}:{src.line_of(_key_of(v, str(e)))}: variant {v.name}: {e}") from None


def _key_of(v: Variant, error: str) -> str:
    """The spec key an error from resolving v is about, to place it: a key of its sets the error
    names, else target_acc or preset if it names them, else its task."""
    named = next((k for k, _ in v.run.sets if k.partition(".")[2] in error), None)
    return named or next((k for k in ("target_acc", "preset") if k in error), "task")
