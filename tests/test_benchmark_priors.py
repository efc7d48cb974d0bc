"""``benchmarks/priors.py``'s speed-up and how much it moves with the seeds drawn (issue 21, part 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark_modules import load_benchmark

priors = load_benchmark("priors")


def _curve(drops: dict[int, float], start: float = 1.0, n: int = 50) -> list[float]:
    """A best-so-far regret curve: ``start``, then the value ``drops[t]`` from trial ``t`` (1-based) on."""
    out, value = [], start
    for t in range(1, n + 1):
        value = min(value, drops.get(t, value))
        out.append(value)
    return out


def test_the_speed_up_reads_trials_to_the_no_prior_median_final_regret() -> None:
    none = np.array([_curve({40: 0.01})] * 5)
    good = np.array([_curve({20: 0.01})] * 5)
    assert priors.speedup(none, good) == 2.0
    assert priors.speedup(none, np.array([_curve({30: 0.02})] * 5)) == 0.0  # never reached


def test_a_bimodal_no_prior_run_makes_the_speed_up_depend_on_the_seeds_drawn() -> None:
    # Without the prior half the seeds end on a worse mode (0.2 from trial 20, as TPE stuck on the wrong
    # optimizer), half refine to 0.01 by trial 45; with it, every seed passes 0.2 at trial 5 and 0.01 at trial 30.
    # Which regret the speed-up is read at depends on which mode the median of the drawn seeds lands in:
    # 20 / 5 = 4x when most drawn seeds are stuck, 45 / 30 = 1.5x otherwise.
    none = np.array([_curve({20: 0.2, 45: 0.01}) if i % 2 else _curve({20: 0.2}) for i in range(10)])
    good = np.array([_curve({5: 0.2, 30: 0.01})] * 10)
    spread = priors.speedup_interval(none, good, resamples=400)
    assert spread["q10"] < priors.SPEEDUP_TARGET < spread["q90"]
    assert 0.2 < spread["share_met"] < 0.8
    # one mode only: every resample gives the same reading
    assert priors.speedup(none, good) == 1.5  # these 10 seeds: 5 and 5, the median between the modes
    steady = priors.speedup_interval(np.array([_curve({20: 0.2, 45: 0.01})] * 10), good, resamples=400)
    assert steady["q10"] == steady["q90"] == 1.5 and steady["share_met"] == 0.0


def test_the_summary_and_the_saved_run_carry_the_interval(tmp_path: Path) -> None:
    out = tmp_path / "priors.json"
    assert priors.main(["--problems", "branin", "--seeds", "2", "--first-seed", "3", "--workers", "1",
                        "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["first_seed"] == 3 and {r["seed"] for r in saved["runs"]} == {3, 4}
    checks = [c for c in saved["summary"]["branin"]["checks"] if "good prior" in c["check"]]
    assert len(checks) == 2
    for c in checks:
        assert 0.0 <= c["interval"]["q10"] <= c["interval"]["q90"]
        assert 0.0 <= c["interval"]["share_met"] <= 1.0


def test_saved_runs_print_again_alone_and_together(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    curve = _curve({30: 0.5})
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    for path, seeds in ((first, (0, 1)), (second, (2,))):
        runs = [{"problem": "branin", "sampler": s, "prior": p, "seed": seed, "regret": curve, "seconds": 0.1}
                for s, p in priors.METHODS for seed in seeds]
        path.write_text(json.dumps({"summary": priors.summarise(runs), "runs": runs}))
    assert priors.main(["--from-json", str(first)]) == 0
    assert "(2 seeds;" in capsys.readouterr().out
    assert priors.main(["--from-json", f"{first},{second},{first}"]) == 0  # a seed in two files counts once
    assert "(3 seeds;" in capsys.readouterr().out
