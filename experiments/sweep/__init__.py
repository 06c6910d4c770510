"""Sweeps: `workbench run SPEC` trains every variant x seed of a spec file, `workbench report` tabulates them.

    specfile.py   a sweep's spec file (TOML): parsed, checked and expanded into its variants
    grid.py       the runner: which runs to start, in what order, resumably (runs/spec-NAME)
    runjob.py     one run: a `workbench train` subprocess, then a `workbench eval` per [[eval]]
    executors.py  where the runs execute: a local pool, or Ray
    lifeline.py   a run's subprocesses end when the runner dies
    results.py    results.csv, results.md and the plots, from the finished runs

Only `workbench run` and `workbench report` (experiments/commands/sweep.py) use this package, and
experiments/cli.py (the lifeline every subprocess holds); it imports no command-line module.
Not to be confused with experiments/runspec.py, the settings of one run.
"""
