"""``tunelab sweep SWEEP.yaml``: run a study whose trials are commands; ``--init train.py`` writes a sweep file.

A mistake in the file is one line naming the file, the line, the key and the fix, with exit code 2, before
any trial starts; other tunelab errors exit with 1, Ctrl-C with 130 (the same command resumes).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli.main import _err, _out, app, sigterm_as_ctrl_c
from tunelab.errors import ConfigError, TunelabError


def _fail(message: str, code: int) -> typer.Exit:
    _err().print(f"error: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def sweep(
    file: Annotated[Path | None, typer.Argument(metavar="SWEEP.yaml", show_default=False,
                                                help="The sweep file (see docs/sweep.md).")] = None,
    init: Annotated[str | None, typer.Option(
        "--init", metavar="SCRIPT", help="Write a commented sweep file for this training script (to --output), "
        "from its argparse, click, Typer or LightningCLI options or its Hydra config.",
        show_default=False)] = None,
    from_wandb: Annotated[Path | None, typer.Option(
        "--from-wandb", metavar="WANDB.yaml", help="Write a sweep file (to --output) from a W&B Sweeps configuration; "
        "the script's wandb.init and wandb.log then work as under a W&B agent.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where --init or --from-wandb writes the sweep file.")
                      ] = Path("sweep.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Let --init or --from-wandb overwrite an existing file.")
                     ] = False,
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, show_default=False,
                                                 help="Override n_trials (the study's total).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, show_default=False,
                                                help="Override workers (trials at once).")] = None,
    storage: Annotated[str | None, typer.Option("--storage", show_default=False,
                                                help="Override storage (a relative SQLite path starts here).")] = None,
    gpus: Annotated[str | None, typer.Option("--gpus", show_default=False,
                                             help="Override gpus: the devices to use, e.g. 0,1 or all.")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(
        "--gpus-per-trial", min=0, show_default=False, help="Override gpus_per_trial (0, 1, 2, or 0.5, 0.25...).")
    ] = None,
    allow_changes: Annotated[bool, typer.Option(
        "--allow-changes", help="Continue an existing study even though the file's parameters changed.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Check the file and print the command of one trial; run nothing.")] = False,
) -> None:
    """Run the study a sweep file describes: each trial runs its command with the trial's parameters, reads the
    metrics it prints (JSON lines) or reports (tunelab.script), and prunes it by signals. The same file resumes
    the study up to n_trials trials in total."""
    from tunelab.sweep.config import load_config
    from tunelab.sweep.template import write_template

    if init is not None and from_wandb is not None:
        raise _fail("give --init SCRIPT or --from-wandb WANDB.yaml, not both", 2)
    if from_wandb is not None:
        from tunelab.sweep.wandb_config import write_from_wandb

        try:
            written = write_from_wandb(from_wandb, output, force=force)
        except ConfigError as e:
            raise _fail(str(e), 2) from None
        _out().print(f"wrote {written} from the W&B sweep {from_wandb}; check it, then run: tunelab sweep {written}",
                     markup=False, highlight=False)
        return
    if init is not None:
        try:
            written = write_template(init, output, force=force)
        except ConfigError as e:
            raise _fail(str(e), 2) from None
        _out().print(f"wrote {written}; edit it, then run: tunelab sweep {written}", markup=False, highlight=False)
        return
    if file is None:
        raise _fail("give a sweep file (tunelab sweep sweep.yaml), or write one with tunelab sweep --init train.py", 2)
    overrides = {"n_trials": n_trials, "workers": workers, "storage": storage, "gpus": gpus,
                 "gpus_per_trial": gpus_per_trial}
    try:
        config = load_config(file, overrides)
    except ConfigError as e:
        raise _fail(str(e), 2) from None
    for warning in config.warnings:
        _err().print(f"warning: {warning}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    from tunelab.sweep.run import check_sweep, run_sweep

    if check:
        try:  # what the run checks before its first trial: this host's GPUs, an existing study of that name
            check_sweep(config, allow_changes=allow_changes)
        except ConfigError as e:
            raise _fail(str(e), 2) from None
        except TunelabError as e:
            raise _fail(str(e), 1) from None
        _print_check(config)
        return

    try:
        with sigterm_as_ctrl_c():  # kill, docker stop, a scheduler's preemption: resumable, as Ctrl-C
            summary = run_sweep(config, allow_changes=allow_changes)
    except ConfigError as e:
        raise _fail(str(e), 2) from None
    except TunelabError as e:
        raise _fail(str(e), 1) from None
    except KeyboardInterrupt:
        _err().print(f"interrupted: run `tunelab sweep {file}` again to resume the study", style="red",
                     markup=False, highlight=False)
        raise typer.Exit(130) from None
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.states.items()))
    out = _out()
    out.print(f"study {summary.study!r}: {states or 'no trials'} ({summary.counted} counted"
              + (f" of {config.n_trials}" if config.n_trials else "") + f"; {summary.ran} run now)",
              markup=False, highlight=False)
    if summary.infeasible:
        bounds = ", ".join(summary.broken)
        out.print(f"{summary.infeasible} COMPLETE trial(s) break a bound of constraints ({bounds}): never the best"
                  + ("; no trial is feasible yet" if summary.best_number is None and not summary.front else ""),
                  markup=False, highlight=False)
    if summary.front:
        shown = ", ".join(map(str, summary.front[:12])) + (", ..." if len(summary.front) > 12 else "")
        out.print(f"Pareto front of {', '.join(config.objectives[0])}: {len(summary.front)} trial(s) ({shown}); "
                  f"tunelab best {shlex.quote(summary.study)} --storage {shlex.quote(summary.storage)}", markup=False,
                  highlight=False)
    if summary.best_number is not None:
        out.print(f"best: trial {summary.best_number}, {config.metric} {summary.best_value!r}, "
                  f"{summary.best_params}", markup=False, highlight=False)
    out.print(f"tunelab show {shlex.quote(summary.study)} --storage {shlex.quote(summary.storage)}", markup=False,
              highlight=False)


def _print_check(config: object) -> None:
    import numpy as np

    from tunelab.space import active_names, unwrap
    from tunelab.sweep.command import render_argv, render_shell
    from tunelab.sweep.config import SweepConfig

    assert isinstance(config, SweepConfig)
    rng = np.random.default_rng(0)
    params: dict[str, object] = {}
    for name, entry in config.space.items():
        params[name] = unwrap(entry).sample(rng)
    active = {k: params[k] for k in active_names(config.space, params)}  # type: ignore[arg-type]
    shown = (render_shell(config.command, active, config.args) if config.shell
             else shlex.join(render_argv(config.command, active, config.args)))
    metrics = config.objectives[0]
    judged = f"metric{'s' if len(metrics) > 1 else ''} {', '.join(metrics)}" + (
        f", constraints on {', '.join(config.constraints)}" if config.constraints else "")
    _out().print(f"{config.file}: OK (study {config.study!r}, {len(config.space)} parameters, {judged}); a trial "
                 f"would run, in {config.workdir}:\n  {shown}", markup=False, highlight=False)
