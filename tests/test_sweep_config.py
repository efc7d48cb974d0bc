"""tunelab sweep: the file's checks (each error names the key, the line and the fix), the command's rendering,
metric lines, and the --init template. No process runs here."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.distributions import Bool, Categorical, Float, Int
from tunelab.errors import ConfigError, SweepConfigError
from tunelab.space import Conditional
from tunelab.sweep.command import placeholders, render_argv, render_shell, trial_env, value_text
from tunelab.sweep.config import config_from_text, load_config
from tunelab.sweep.metrics import MetricParser
from tunelab.sweep.template import render_template, write_template

GOOD = """\
study: cnn-sweep
storage: sqlite:///tunelab.db
command: python train.py --lr {lr} --width {width} --optimizer {optimizer} --momentum {momentum?} --bn {use_bn}
parameters:
  lr:        {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
  width:     {type: int, low: 16, high: 512, log: true}
  optimizer: {type: categorical, choices: [sgd, adam]}
  momentum:  {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}
  use_bn:    {type: bool}
metric: val_loss
direction: minimize
sampler: auto
pruner: {type: asha, min_resource: 1, max_resource: 27, reduction_factor: 3}
n_trials: 50
workers: 4
gpus_per_trial: 0.5
trial_timeout: 3600
"""


def load(text: str, folder: Path, **overrides: object):
    return config_from_text(text, folder, "sweep.yaml", overrides)


def error(text: str, folder: Path, **overrides: object) -> SweepConfigError:
    with pytest.raises(SweepConfigError) as info:
        load(text, folder, **overrides)
    return info.value


def test_the_issue_s_file_is_valid(tmp_path: Path) -> None:
    c = load(GOOD, tmp_path)
    assert c.study == "cnn-sweep" and c.metric == "val_loss" and c.workers == 4 and c.n_trials == 50
    assert c.storage == f"sqlite:///{tmp_path.resolve() / 'tunelab.db'}"  # beside the file, from anywhere
    assert c.space["lr"] == Float(1e-5, 1e-1, log=True)
    assert c.space["width"] == Int(16, 512, log=True)
    assert c.space["optimizer"] == Categorical(["sgd", "adam"])
    assert isinstance(c.space["momentum"], Conditional)
    assert c.gpus_per_trial == 0.5 and c.trial_timeout == 3600
    assert c.build_pruner().describe()["metric"] == "val_loss"
    assert c.warnings == ()


@pytest.mark.parametrize(("replace", "by", "key", "line", "fix"), [
    ("  width:     {type: int,", "  width:     {type: integer,", "parameters.width.type", 6, "float, int, categorical"),
    ("log: true}\n  width", "log: true, scale: 2}\n  width", "parameters.lr.scale", 5, "the keys here are"),
    ("metric: val_loss", "metric: val_loss\nmetrik: 1", "metrik", 11, "did you mean 'metric'"),
    ("low: 1.0e-5, high: 1.0e-1", "low: 0.5, high: 0.1", "parameters.lr.low", 5, "swap them"),
    ("low: 16, high: 512", "low: 600, high: 512", "parameters.width.low", 6, "swap them"),
    ("when: {optimizer: sgd}", "when: {optimiser: sgd}", "parameters.momentum.when.optimiser", 8,
     "did you mean 'optimizer'"),
    ("when: {optimizer: sgd}", "when: {optimizer: rmsprop}", "parameters.momentum.when.optimizer", 8,
     "use one of its values"),
    ("when: {optimizer: sgd}", "when: {optimizer: []}", "parameters.momentum.when.optimizer", 8,
     "the condition never holds"),
    ("gpus_per_trial: 0.5", "gpus_per_trial: 0.3", "gpus_per_trial", 16, "does not divide one GPU"),
    ("--bn {use_bn}", "--bn {use_bn} --depth {depth}", "command", 3, "names no parameter"),
    ("--momentum {momentum?}", "--momentum {momentum}", "command", 3, "{momentum?}"),
    ("sampler: auto", "sampler: bayes", "sampler", 12, "use one of"),
    ("sampler: auto", "sampler: {type: tpe, n_startup: 3}", "sampler", 12, "n_startup_trials"),
    ("pruner: {type: asha,", "pruner: {type: ashaa,", "pruner.type", 13, "did you mean 'asha'"),
    ("direction: minimize", "direction: down", "direction", 11, "'minimize' or 'maximize'"),
    ("workers: 4", "workers: 0", "workers", 15, "greater than or equal to 1"),
    ("n_trials: 50", "n_trials: 50\nn_trials: 60", "n_trials", 15, "appears twice"),
    ("log: true}\n  width", "log: true, step: 0.1}\n  width", "parameters.lr", 5, "cannot be combined"),
])
def test_each_mistake_names_its_key_and_line(tmp_path: Path, replace: str, by: str, key: str, line: int,
                                             fix: str) -> None:
    assert replace in GOOD
    e = error(GOOD.replace(replace, by, 1), tmp_path)
    assert e.key == key, str(e)
    assert e.line == line, str(e)
    assert f"sweep.yaml:{line}: {key}" in str(e)
    assert fix in str(e)
    assert "\n" not in str(e)


def test_a_missing_key_names_what_to_add(tmp_path: Path) -> None:
    e = error(GOOD.replace("metric: val_loss\n", ""), tmp_path)
    assert e.key == "metric" and "metric: val_loss" in str(e)


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    e = error(GOOD.replace("  width:     {type: int,", "  width:     {type: int,,"), tmp_path)
    assert "YAML syntax error" in str(e) and e.line == 6
    e = error("study: x\ncommand: [python\nmetric: y\n", tmp_path)
    assert "sweep.yaml:" in str(e) and "YAML syntax error" in str(e)


def test_a_parameter_used_nowhere_is_a_warning(tmp_path: Path) -> None:
    c = load(GOOD.replace(" --bn {use_bn}", ""), tmp_path)
    assert len(c.warnings) == 1
    assert "sweep.yaml:9: parameters.use_bn" in c.warnings[0] and "TUNELAB_PARAM_USE_BN" in c.warnings[0]
    assert load(GOOD.replace(" --bn {use_bn}", "") + "args: auto\n", tmp_path).warnings == ()


def test_the_metric_cannot_be_a_reserved_word_and_a_regex_needs_named_groups(tmp_path: Path) -> None:
    assert error(GOOD.replace("metric: val_loss", "metric: step"), tmp_path).key == "metric"
    e = error(GOOD + "metrics_regex: 'loss=([0-9.]+)'\n", tmp_path)
    assert e.key == "metrics_regex" and "named group" in str(e) and e.line == 18
    e = error(GOOD + "metrics_regex: 'loss=(?P<val_loss>[0-9.]+'\n", tmp_path)
    assert e.key == "metrics_regex" and "not a regular expression" in str(e)


def test_flags_override_the_file_and_their_errors_say_command_line(tmp_path: Path) -> None:
    c = load(GOOD, tmp_path, n_trials=3, workers=1, storage="sqlite:///other.db", gpus="0,1", gpus_per_trial=1)
    assert (c.n_trials, c.workers, c.gpus, c.gpus_per_trial) == (3, 1, "0,1", 1.0)
    assert c.storage == f"sqlite:///{Path.cwd().resolve() / 'other.db'}"  # a flag's path starts in the cwd
    e = error(GOOD, tmp_path, workers=0)
    assert str(e).startswith("command line: workers")
    assert error(GOOD, tmp_path, gpus_per_trial=0.7).key == "gpus_per_trial"


def test_parents_may_come_after_their_children_and_circles_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("  momentum:  {type: float, low: 0.0, high: 0.99, when: {optimizer: sgd}}\n", "")
    text = text.replace("parameters:\n", "parameters:\n  momentum:  {type: float, low: 0.0, high: 0.99, "
                        "when: {optimizer: sgd}}\n")
    c = load(text, tmp_path)
    assert list(c.space).index("optimizer") < list(c.space).index("momentum")
    e = error("command: run {a?} {b?}\nmetric: m\nparameters:\n  a: {type: bool, when: {b: true}}\n"
              "  b: {type: bool, when: {a: true}}\n", tmp_path)
    assert "circle" in str(e)


def test_load_config_reads_a_file_and_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(GOOD)
    assert load_config(tmp_path / "s.yaml").study == "cnn-sweep"
    with pytest.raises(SweepConfigError, match="--init"):
        load_config(tmp_path / "missing.yaml")


def test_a_categorical_shorthand_and_steps(tmp_path: Path) -> None:
    c = load("command: run {opt} {d} {n}\nmetric: m\nparameters:\n  opt: [sgd, adam]\n"
             "  d: {type: float, low: 0.0, high: 0.5, step: 0.1}\n  n: {type: int, low: 0, high: 10, step: 2}\n",
             tmp_path)
    assert c.space["opt"] == Categorical(["sgd", "adam"])
    assert c.space["d"] == Float(0.0, 0.5, step=0.1) and c.space["n"] == Int(0, 10, step=2)
    assert c.study == "sweep"  # the file's name when study: is not given


# -- the command ------------------------------------------------------------------------------------
def test_placeholders_fill_one_argument_each_whatever_the_value() -> None:
    argv = render_argv("python train.py --name {name} --lr={lr}", {"name": "a b; rm -rf /", "lr": 1e-05})
    assert argv == ["python", "train.py", "--name", "a b; rm -rf /", "--lr=1e-05"]
    shell = render_shell("python train.py --name {name} | tee out", {"name": "a b; $(x)"})
    assert shell == "python train.py --name 'a b; $(x)' | tee out"
    assert shlex.split(shell)[3] == "a b; $(x)"


def test_optional_placeholders_drop_their_word_and_option_when_inactive() -> None:
    cmd = "python t.py --opt {opt} --momentum {m?} --beta={b?} extra={b?} --last"
    assert render_argv(cmd, {"opt": "adam"}) == ["python", "t.py", "--opt", "adam", "--last"]
    assert render_argv(cmd, {"opt": "sgd", "m": 0.9, "b": 0.5}) == [
        "python", "t.py", "--opt", "sgd", "--momentum", "0.9", "--beta=0.5", "extra=0.5", "--last"]
    assert render_shell(cmd, {"opt": "adam"}).split() == ["python", "t.py", "--opt", "adam", "--last"]


def test_a_shell_placeholder_inside_quotes_reaches_the_script_as_is() -> None:
    # inside double quotes the value was shlex.quote'd too: the script got "'a b'" with the single quotes
    value = "a b; $(x) `y` \"q\" \\ it's"
    for template in ('printf "%s\\n" "{v}"', "printf '%s\\n' '{v}'", 'printf "%s\\n" {v}',
                     'printf "%s\\n" "pre {v} post"'):
        line = render_shell(template, {"v": value})
        out = subprocess.run(line, shell=True, capture_output=True, text=True, check=True).stdout
        expected = f"pre {value} post" if "pre" in template else value
        assert out == expected + "\n", (template, line)


@pytest.mark.parametrize("quote", ['"', "'"])
def test_an_inactive_quoted_placeholder_drops_its_option_in_a_shell_command(quote: str) -> None:
    # `--momentum "{m?}"` left `--momentum` behind, which then took `--last` as its value
    cmd = f"python t.py --momentum {quote}{{m?}}{quote} --last && echo done"
    assert shlex.split(render_shell(cmd, {})) == ["python", "t.py", "--last", "&&", "echo", "done"]
    assert render_argv(cmd, {}) == ["python", "t.py", "--last", "&&", "echo", "done"]
    assert shlex.split(render_shell(cmd, {"m": 0.9}))[2:4] == ["--momentum", "0.9"]


def test_hydra_overrides_and_args_auto() -> None:
    argv = render_argv("python train.py optimizer.lr={lr} model.width={width}", {"lr": 0.01, "width": 64})
    assert argv == ["python", "train.py", "optimizer.lr=0.01", "model.width=64"]
    argv = render_argv("python train.py --lr {lr}", {"lr": 0.01, "use_bn": True, "opt": "sgd"}, args="auto")
    assert argv == ["python", "train.py", "--lr", "0.01", "--use_bn", "true", "--opt", "sgd"]
    assert render_argv(["python", "-c", "print('{{x}}')", "{lr}"], {"lr": 2}) == ["python", "-c", "print('{x}')", "2"]
    assert value_text(True) == "true" and value_text(None) == "null" and value_text(0.1) == "0.1"


def test_placeholders_are_listed_and_shell_variables_left_alone() -> None:
    assert placeholders("run {a} {b?} ${HOME} {{literal}}") == [("a", False), ("b", True)]
    with pytest.raises(ConfigError, match="not a placeholder"):
        placeholders("run {lr!}")


def test_the_environment_carries_every_parameter() -> None:
    env = trial_env({"PATH": "/bin", "TUNELAB_PARAM_OLD": "x"}, {"EXTRA": "1"}, {"lr": 0.1, "optimizer.name": "sgd"},
                    {"lr": "LR", "optimizer.name": "OPTIMIZER_NAME"}, study="s", number=3, params_file="/p.json",
                    trial_dir="/t", channel={})
    assert json.loads(env["TUNELAB_PARAMS"]) == {"lr": 0.1, "optimizer.name": "sgd"}
    assert env["TUNELAB_PARAM_LR"] == "0.1" and env["TUNELAB_PARAM_OPTIMIZER_NAME"] == "sgd"
    assert "TUNELAB_PARAM_OLD" not in env and env["EXTRA"] == "1" and env["PATH"] == "/bin"
    assert env["TUNELAB_PARAMS_FILE"] == "/p.json" and env["TUNELAB_TRIAL_NUMBER"] == "3"


# -- metric lines ----------------------------------------------------------------------------------
def test_json_lines_and_regex_lines() -> None:
    p = MetricParser([r"epoch (?P<step>\d+) val_loss=(?P<val_loss>[\d.e-]+)"])
    e = p.parse('{"step": 3, "val_loss": 0.41, "val_acc": 0.88, "note": "x"}')
    assert e is not None and e.step == 3 and e.metrics == {"val_loss": 0.41, "val_acc": 0.88}
    e = p.parse("epoch 4 val_loss=3.5e-01 (best)")
    assert e is not None and e.step == 4 and e.metrics == {"val_loss": 0.35}
    e = p.parse('{"value": 0.2}')
    assert e is not None and e.value == 0.2 and not e.metrics
    e = p.parse('{"final": {"val_loss": 0.1, "val_acc": 0.9}}')
    assert e is not None and e.final == {"val_loss": 0.1, "val_acc": 0.9}
    assert p.parse("loading data...") is None and p.parse("{not json}") is None and p.parse("[1, 2]") is None
    assert p.parse('{"step": 2}') is None
    e = p.parse('{"step": 1e20, "val_loss": 0.5, "huge": ' + "1" * 400 + "}")
    assert e is not None and e.step is None and e.metrics == {"val_loss": 0.5}  # past 64 bits / a float: none


# -- the template ----------------------------------------------------------------------------------
def test_init_writes_a_template_that_validates(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--lr', type=float, default=1e-3)\n"
                      "p.add_argument('--width', type=int, default=64)\n"
                      "p.add_argument('--optimizer', choices=['sgd', 'adam'], default='sgd')\n"
                      "p.add_argument('--use-bn', action='store_true')\n"
                      "p.add_argument('--epochs', type=int, default=5)\n")
    out = write_template(str(script), tmp_path / "sweep.yaml")
    c = load_config(out)
    assert set(c.space) == {"lr", "width", "optimizer"}
    assert c.space["lr"] == Float(1e-4, 1e-2, log=True) and c.space["width"] == Int(16, 256, log=True)
    assert c.warnings == ()
    # a store_true flag takes no value: `--use-bn {use_bn}` made argparse refuse `--use-bn false` in every trial
    assert "--use-bn" not in str(c.command) and "# use_bn: {type: bool}" in out.read_text()
    parser = {"__name__": "not_main"}
    exec(script.read_text(), parser)  # the script's own parser takes the command the template wrote
    argv = render_argv(str(c.command), {"lr": 0.001, "width": 64, "optimizer": "adam"})
    assert parser["p"].parse_args(argv[2:]).optimizer == "adam"
    with pytest.raises(SweepConfigError, match="exists"):
        write_template(str(script), out)
    bare = config_from_text(render_template("run.sh"), tmp_path)
    assert bare.command == "sh run.sh --lr {lr}" and set(bare.space) == {"lr"}
    assert sys.executable  # the template itself names `python`, found on PATH when the sweep runs


def test_init_puts_the_arguments_a_script_requires_in_the_command(tmp_path: Path) -> None:
    # a positional argument or required=True option that is no parameter was left out of the command: every
    # trial failed with argparse's "the following arguments are required" and the sweep stopped at start-up
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\n"
                      "p.add_argument('data_dir')\n"
                      "p.add_argument('--data', required=True)\n"
                      "p.add_argument('--lr', type=float, default=1e-3)\n"
                      "p.add_argument('rest', nargs='*')\n")
    out = write_template(str(script), tmp_path / "sweep.yaml")
    c = load_config(out)
    assert set(c.space) == {"lr"}
    argv = render_argv(str(c.command), {"lr": 0.001})
    parser = {"__name__": "not_main"}
    exec(script.read_text(), parser)
    parsed = parser["p"].parse_args(argv[2:])  # argparse takes it: nothing required is missing
    assert (parsed.data_dir, parsed.data, parsed.lr) == ("FILL_IN", "FILL_IN", 0.001)
    assert "requires data_dir, --data: replace each FILL_IN" in out.read_text()


def test_a_bool_prior_written_as_a_list_or_a_mapping_says_it_is_one_probability(tmp_path: Path) -> None:
    # it said pydantic's "Input should be a valid number", with no fix
    e = error(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: [0.2, 0.8]}"), tmp_path)
    assert e.key == "parameters.use_bn.prior" and e.line == 9
    assert str(e).endswith("a bool's prior is one number, the probability of true: write prior: 0.8 for "
                           "[false, true] = [0.2, 0.8]")
    e = error(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: {type: normal}}"), tmp_path)
    assert str(e).endswith("the probability of true: e.g. prior: 0.8")
    assert load(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: 0.8}"), tmp_path)


def test_args_auto_with_a_shell_pipe_is_refused_before_the_options_go_to_the_pipe_s_reader(tmp_path: Path) -> None:
    # `python train.py 2>&1 | tee log` with args: auto ran `... | tee log --lr 0.01`: the script got no parameters,
    # tee got them, and every trial failed (or worse, ran with the script's defaults)
    base = "command: {cmd}\nshell: true\nargs: auto\nparameters:\n  lr: {{type: float, low: 0.1, high: 1}}\nmetric: m\n"
    e = error(base.format(cmd="python train.py 2>&1 | tee log.txt"), tmp_path)
    assert e.key == "args" and e.line == 3
    assert "after '|': the parameters would go to 'tee log.txt', not to the script" in str(e)
    assert "line ends there" in str(error(base.format(cmd="python train.py &&"), tmp_path))
    for fine in ("cd . && python train.py", "python train.py > log.txt 2>&1", "python train.py '|' \"a;b\"",
                 "python train.py a\\;b"):
        assert load(base.format(cmd=fine), tmp_path).args == "auto"
    assert load(base.format(cmd="python train.py | tee log").replace("args: auto", "args: env"), tmp_path)


def test_a_conditional_placeholder_without_a_question_mark_under_args_auto_says_a_fix_that_applies(
        tmp_path: Path) -> None:
    # the fix offered was "or use args: auto" to a file that already said args: auto
    text = GOOD.replace("{momentum?}", "{momentum}")
    assert str(error(text, tmp_path)).endswith("or use args: auto")
    e = error(text + "args: auto\n", tmp_path)
    assert e.key == "command" and "use args: auto" not in str(e)
    assert str(e).endswith("or remove it and its option from the command (args: auto passes it when it is active)")


def test_init_names_the_script_from_the_sweep_file_s_folder_where_the_command_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `tunelab sweep --init train.py -o sweeps/cnn.yaml` wrote `python train.py`, run in sweeps/: no such file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("import argparse\np = argparse.ArgumentParser()\n"
                                       "p.add_argument('--lr', type=float, default=1e-3)\n")
    (tmp_path / "sweeps").mkdir()
    for output, named in ((Path("sweeps/cnn.yaml"), "../train.py"), (Path("here.yaml"), "train.py")):
        c = load_config(write_template("train.py", output))
        argv = render_argv(str(c.command), {"lr": 0.001})
        assert argv[:2] == ["python", named] and (Path(c.workdir) / argv[1]).resolve() == tmp_path / "train.py"
    absolute = load_config(write_template(str(tmp_path / "train.py"), Path("sweeps/abs.yaml")))
    assert render_argv(str(absolute.command), {"lr": 0.001})[1] == str(tmp_path / "train.py")


def test_a_key_of_another_parameter_type_lists_this_type_s_keys(tmp_path: Path) -> None:
    # `prior:` on a bool and `low:` on a categorical are keys of other types: the message said
    # "did you mean 'prior'?" for the key written, which is no fix
    e = error(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, low: 0}"), tmp_path)
    assert e.key == "parameters.use_bn.low" and e.line == 9
    assert "did you mean" not in str(e) and "the keys here are: type, prior, when" in str(e)
    e = error(GOOD.replace("choices: [sgd, adam]}", "choices: [sgd, adam], low: 1}"), tmp_path)
    assert e.key == "parameters.optimizer.low" and "did you mean 'low'" not in str(e)
    assert "type, choices, prior, when" in str(e)


def test_a_bool_s_prior_is_its_probability_of_true(tmp_path: Path) -> None:
    c = load(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: 0.8}"), tmp_path)
    assert c.space["use_bn"] == Bool(p=0.8)
    e = error(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: 1.5}"), tmp_path)
    assert e.key == "parameters.use_bn.prior" and "probability of true, e.g. prior: 0.3" in str(e)
    e = error(GOOD.replace("use_bn:    {type: bool}", "use_bn:    {type: bool, prior: [0.5, 0.5]}"), tmp_path)
    assert e.key == "parameters.use_bn.prior"


@pytest.mark.parametrize(("command", "fix"), [
    ("''", "the command is empty"),
    ("\"python train.py '--lr {lr}\"", "No closing quotation"),
])
def test_a_command_that_cannot_run_is_an_error_before_any_trial(tmp_path: Path, command: str, fix: str) -> None:
    # these passed the check and then failed every trial (IndexError, ValueError: No closing quotation)
    text = "command: " + command + "\nmetric: val_loss\nparameters:\n  lr: {type: float, low: 0.1, high: 1}\n"
    e = error(text, tmp_path)
    assert e.key == "command" and e.line == 1 and fix in str(e) and "\n" not in str(e)


@pytest.mark.parametrize("third", ["0.333", "0.3333333", "0.333333333"])
def test_a_third_of_a_gpu_is_accepted_as_optimize_accepts_it(tmp_path: Path, third: str) -> None:
    # YAML has no 1/3: the file refused every decimal short of 0.3333333333333333, which optimize() takes
    c = load(GOOD.replace("gpus_per_trial: 0.5", f"gpus_per_trial: {third}"), tmp_path)
    assert c.gpus_per_trial == float(third)
    e = error(GOOD.replace("gpus_per_trial: 0.5", "gpus_per_trial: 0.3"), tmp_path)
    assert e.key == "gpus_per_trial" and "(3 trials per GPU)" in str(e) and "(4 trials per GPU)" in str(e)


@pytest.mark.parametrize(("lines", "key", "says"), [
    ("gpus_per_trial: -1", "gpus_per_trial", "-1 GPUs"),
    ("gpus_per_trial: many", "gpus_per_trial", "'many' is not a number of GPUs"),
    ("gpus_per_trial: true", "gpus_per_trial", "true is not a number of GPUs"),  # was read as 1
    ("gpus_per_trial: 0.3", "gpus_per_trial", "0.3 does not divide one GPU"),
    ("gpus_per_trial: 1.5", "gpus_per_trial", "1.5 GPUs: above one, a trial gets whole GPUs; write"),
    ("gpus_per_trial: 1\ngpus: 3", "gpus", "3 is one number, not a list of devices; write gpus: [3]"),
    ("gpus_per_trial: 1\ngpus: [0, x]", "gpus", "'x' in [0, 'x'] is not a device number"),
    ("gpus_per_trial: 1\ngpus: [-1]", "gpus", "-1 in [-1] is not a device number"),
    ("gpus_per_trial: 1\ngpus: [0, 0]", "gpus", "device 0 is listed twice in [0, 0]"),
    ("gpus_per_trial: 1\ngpus: []", "gpus", "[] lists no device"),
    ("gpus_per_trial: 1\ngpus: first", "gpus", "'first' is not a list of device numbers"),
])
def test_each_bad_gpu_key_names_the_key_its_line_and_the_fix_in_the_file_s_terms(
        tmp_path: Path, lines: str, key: str, says: str) -> None:
    """The messages were pydantic's ('Input should be a valid list (got 3)', 'Input should be a valid string', no
    fix), the engine's ('gpus: gpus entries must be device ids >= 0'), or none at all (gpus_per_trial: true)."""
    text = GOOD.replace("gpus_per_trial: 0.5\n", "") + lines + "\n"  # after GOOD's other 17 lines
    e = error(text, tmp_path)
    line = 17 if key == "gpus_per_trial" else 18
    assert (e.key, e.line) == (key, line)
    assert str(e).startswith(f"sweep.yaml:{line}: {key}: {says}"), str(e)
    assert "gpus_per_trial: " in str(e).removeprefix(f"sweep.yaml:{line}: {key}: ") or "gpus: [" in str(e)  # the fix
    assert "Input should" not in str(e) and "gpus=" not in str(e) and f"{key}: {key}" not in str(e)


def test_devices_without_gpus_per_trial_are_an_error_as_in_optimize(tmp_path: Path) -> None:
    # gpus: [0, 1] with gpus_per_trial: 0 was silently ignored, where optimize() refuses the same
    e = error(GOOD.replace("gpus_per_trial: 0.5", "gpus_per_trial: 0") + "gpus: [0, 1]\n", tmp_path)
    assert e.key == "gpus" and "gpus_per_trial is 0" in str(e) and "set gpus_per_trial" in str(e)
    assert load(GOOD.replace("gpus_per_trial: 0.5", "gpus_per_trial: 0") + "gpus: all\n", tmp_path).gpus == "all"


@pytest.mark.parametrize(("param", "key"), [
    ("{type: float, low: true, high: 1}", "low"),
    ("{type: int, low: 1, high: true}", "high"),
    ("{type: float, low: 0.1, high: 1, prior: {type: normal, center: false, spread: 0.1}}", "center"),
])
def test_true_or_false_where_a_number_belongs_is_an_error(tmp_path: Path, param: str, key: str) -> None:
    # YAML's true was read as 1.0 (low: true made a range [1, 1])
    e = error("command: python t.py {x}\nmetric: val_loss\nparameters:\n  x: " + param + "\n", tmp_path)
    assert e.key is not None and e.key.endswith(key) and "is not a number here" in str(e), str(e)
    assert load("command: python t.py {x}\nmetric: val_loss\nparameters:\n  x: {type: int, low: 1, high: 4.0}\n",
                tmp_path).space["x"] == Int(1, 4)  # a whole float is still an int bound


@pytest.mark.parametrize(("line", "example"), [
    ("n_trials: true", "whole number"), ("workers: true", "whole number"), ("seed: false", "whole number"),
    ("max_start_failures: true", "whole number"), ("timeout: true", "0.1"), ("trial_timeout: true", "0.1"),
    ("prune_grace: true", "0.1"), ("start_failure_seconds: true", "0.1"), ("log_limit_mb: true", "0.1"),
])
def test_true_or_false_where_a_top_level_number_belongs_is_an_error(tmp_path: Path, line: str, example: str) -> None:
    # n_trials: true ran 1 trial, seed: false seeded with 0, timeout: true stopped after a second
    e = error(f"command: python t.py {{x}}\nmetric: val_loss\nparameters:\n  x: [1, 2]\n{line}\n", tmp_path)
    key = line.partition(":")[0]
    assert e.key == key and "is not a number here" in str(e) and example in str(e), str(e)


def test_a_seed_under_sampler_points_to_the_top_level_seed(tmp_path: Path) -> None:
    # was "TPESampler got an unexpected keyword argument 'seed'; its options are: ..." (no seed among them)
    e = error("command: python t.py {x}\nmetric: val_loss\nparameters:\n  x: [1, 2]\nsampler: {type: tpe, seed: 1}\n",
              tmp_path)
    assert e.key == "sampler" and "top-level seed:" in str(e), str(e)


def test_two_parameters_with_one_environment_variable_are_an_error(tmp_path: Path) -> None:
    # a.b and a_b were both TUNELAB_PARAM_A_B: the script saw one of the two values under that name
    text = "command: python t.py {a.b} {a_b}\nmetric: val_loss\nparameters:\n  a.b: [1, 2]\n  a_b: [3, 4]\n"
    e = error(text, tmp_path)
    assert e.key == "parameters.a_b" and e.line == 5 and "TUNELAB_PARAM_A_B" in str(e) and "rename one" in str(e)


def test_cuda_visible_devices_in_env_cannot_undo_the_gpu_assignment(tmp_path: Path) -> None:
    # env: is applied over the worker's environment, so every trial got the file's devices, whatever its slot
    e = error(GOOD + "env: {CUDA_VISIBLE_DEVICES: '0'}\n", tmp_path)
    assert e.key == "env.CUDA_VISIBLE_DEVICES" and e.line == 18 and "gpus: [0, 1]" in str(e)
    c = load(GOOD.replace("gpus_per_trial: 0.5", "gpus_per_trial: 0") + "env: {CUDA_VISIBLE_DEVICES: '0'}\n", tmp_path)
    assert c.env == {"CUDA_VISIBLE_DEVICES": "0"}  # without an assignment the file may choose the devices


def test_the_warning_about_an_unused_conditional_parameter_suggests_a_placeholder_that_is_allowed(
        tmp_path: Path) -> None:
    # it said "add {momentum} to the command", which is then an error (a conditional parameter needs {momentum?})
    c = load(GOOD.replace(" --momentum {momentum?}", ""), tmp_path)
    assert len(c.warnings) == 1 and "add {momentum?} to the command" in c.warnings[0]


def test_a_learning_curve_pruner_reads_the_sweep_s_metric_and_names_what_it_needs(tmp_path: Path) -> None:
    base = "command: python t.py {x}\nparameters:\n  x: {type: float, low: 0, high: 1}\nmetric: val_acc\n" \
           "direction: maximize\n"
    pruner = load(base + "pruner: {type: curve, max_resource: 27, confidence: 0.9}\n", tmp_path).build_pruner()
    assert type(pruner).__name__ == "LearningCurvePruner"
    assert (pruner.metric, pruner.direction, pruner.max_resource) == ("val_acc", "maximize", 27)
    assert type(load(base + "pruner: {type: learning-curve, max_resource: 9}\n", tmp_path).build_pruner()).__name__ \
        == "LearningCurvePruner"
    e = error(base + "pruner: curve\n", tmp_path)
    assert e.key == "pruner" and "max_resource" in str(e)
    e = error(base.replace("metric: val_acc\ndirection: maximize", "metric: [a, b]\ndirection: [minimize, minimize]")
              + "pruner: {type: curve, max_resource: 27}\n", tmp_path)
    assert "curve compares one metric" in str(e)
