"""``tunelab sweep --init`` on scripts that take their options with click, Typer and Hydra: the template's command,
filled with a trial's values, is taken by the real library (click and Typer parse it in process; Hydra runs the
script), and every parameter reaches the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from tunelab.distributions import Bool, Categorical, Float, Int
from tunelab.space import Conditional
from tunelab.sweep.command import render_argv
from tunelab.sweep.config import load_config
from tunelab.sweep.script_options import read_options
from tunelab.sweep.template import write_template


def _namespace(script: Path) -> dict[str, Any]:
    scope: dict[str, Any] = {"__name__": "not_main"}
    exec(compile(script.read_text(), str(script), "exec"), scope)
    return scope


def test_click_options_become_parameters_and_click_takes_the_command(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""\
        import click

        @click.command()
        @click.argument("data_dir")
        @click.option("--lr", type=float, default=1e-3)
        @click.option("--weight-decay", default=1e-4)
        @click.option("--width", type=int, default=64)
        @click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd")
        @click.option("--use-bn", is_flag=True)
        @click.option("--epochs", type=int, default=10)
        def main(data_dir, lr, weight_decay, width, optimizer, use_bn, epochs):
            return dict(data_dir=data_dir, lr=lr, weight_decay=weight_decay, width=width, optimizer=optimizer)
        """))
    out = write_template(str(script), tmp_path / "sweep.yaml")
    c = load_config(out)
    assert list(c.space) == ["lr", "weight_decay", "width", "optimizer"]  # in the script's order
    assert c.space["weight_decay"] == Float(1e-5, 1e-3, log=True)  # the type told by the default alone
    assert c.space["optimizer"] == Categorical(["sgd", "adam"]) and c.space["width"] == Int(16, 256, log=True)
    text = out.read_text()
    assert "options train.py declares with click" in text or f"options {script} declares with click" in text
    assert "# use_bn: {type: bool}" in text and "requires data_dir: replace each FILL_IN" in text
    params = {"lr": 0.002, "weight_decay": 3e-5, "width": 100, "optimizer": "adam"}
    argv = render_argv(str(c.command), params)
    got = _namespace(script)["main"].main(argv[2:], standalone_mode=False)
    assert got == {"data_dir": "FILL_IN", **params}


def test_typer_parameters_become_options_with_dashes_and_typer_takes_the_command(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""\
        from typing import Annotated
        import typer

        app = typer.Typer()

        @app.command()
        def train(data: str, lr: float = 1e-3, weight_decay: Annotated[float, typer.Option()] = 0.0,
                  width: int = typer.Option(32, help="hidden units"), use_bn: bool = False, seed: int = 0):
            return dict(lr=lr, weight_decay=weight_decay, width=width)
        """))
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    assert c.space == {"lr": Float(1e-4, 1e-2, log=True), "weight_decay": Float(0.0, 1.0),
                       "width": Int(8, 128, log=True)}
    assert "--weight-decay {weight_decay}" in str(c.command) and "FILL_IN" in str(c.command)
    params = {"lr": 0.005, "weight_decay": 0.25, "width": 50}
    argv = render_argv(str(c.command), params)
    command = typer.main.get_command(_namespace(script)["app"])
    assert command.main(argv[2:], standalone_mode=False) == params
    assert read_options(script).style == "typer"


def test_several_typer_commands_are_named_as_a_note_not_guessed(tmp_path: Path) -> None:
    script = tmp_path / "cli.py"
    script.write_text("import typer\napp = typer.Typer()\n@app.command()\ndef fit(lr: float = 0.1): ...\n"
                      "@app.command()\ndef test(batch: int = 8): ...\n")
    text = write_template(str(script), tmp_path / "sweep.yaml").read_text()
    assert "2 Typer commands (fit, test): add the command's name after the script" in text
    assert load_config(tmp_path / "sweep.yaml").space == {"lr": Float(1e-5, 1e-1, log=True)}


_HYDRA_SCRIPT = """\
import json
import hydra
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    print(json.dumps(OmegaConf.to_container(cfg, resolve=True)))

if __name__ == "__main__":
    main()
"""


def _hydra_project(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "config.yaml").write_text(textwrap.dedent("""\
        defaults:
          - model: cnn
          - _self_
        optimizer:
          lr: 1e-3            # YAML 1.1 reads this as text; Hydra (OmegaConf) as a float
          weight_decay: 0.0
          nesterov: true
          name: adam
        trainer:
          epochs: 10
          seed: 0
        _target_: ignored
        """))
    (conf / "model" / "cnn.yaml").write_text("width: 32\ndropout: 0.1\n")
    (conf / "model" / "mlp.yaml").write_text("hidden: 128\n")
    script = tmp_path / "train.py"
    script.write_text(_HYDRA_SCRIPT)
    return script


def test_a_hydra_config_becomes_overrides_with_its_groups_as_categoricals(tmp_path: Path) -> None:
    script = _hydra_project(tmp_path)
    out = write_template(str(script), tmp_path / "sweep.yaml")
    c = load_config(out)
    assert c.space == {
        "model": Categorical(["cnn", "mlp"]),
        "model.width": Conditional(Int(8, 128, log=True), when={"model": "cnn"}),
        "model.dropout": Conditional(Float(0.0, 0.9), when={"model": "cnn"}),  # a fraction: linear
        "optimizer.lr": Float(1e-4, 1e-2, log=True),
        "optimizer.weight_decay": Float(0.0, 1.0),
        "optimizer.nesterov": Bool(),
    }
    assert str(c.command).startswith(f"python {script} model={{model}} model.width={{model.width?}}")
    assert "in its Hydra config" in out.read_text()


def test_hydra_takes_the_template_s_command_and_the_script_gets_every_value(tmp_path: Path) -> None:
    script = _hydra_project(tmp_path)
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    for params in ({"model": "cnn", "model.width": 100, "model.dropout": 0.3, "optimizer.lr": 0.004,
                    "optimizer.weight_decay": 0.5, "optimizer.nesterov": False},
                   {"model": "mlp", "optimizer.lr": 2e-4, "optimizer.weight_decay": 0.0,
                    "optimizer.nesterov": True}):  # mlp has no width: its override is left out
        argv = render_argv(str(c.command), params)
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        cfg = json.loads(done.stdout.strip().splitlines()[-1])
        flat = {"model": "cnn" if "width" in cfg["model"] else "mlp",
                **{f"model.{k}": v for k, v in cfg["model"].items() if k != "hidden"},
                **{f"optimizer.{k}": v for k, v in cfg["optimizer"].items() if k != "name"}}
        assert flat == params


def _hydra_project_with_every_kind_of_group(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    for folder in ("model", "aug", "db", "server/cache"):
        (conf / folder).mkdir(parents=True)
    (conf / "config.yaml").write_text(textwrap.dedent("""\
        defaults:
          - model: cnn
          - optional aug: light
          - db@backup: mysql
          - server/cache: redis
          - override hydra/job_logging: disabled
          - _self_
        optimizer:
          lr: 1e-3
        """))
    (conf / "model" / "cnn.yaml").write_text("width: 32\n")
    (conf / "model" / "mlp.yaml").write_text("hidden: 128\n")
    (conf / "aug" / "light.yaml").write_text("strength: 0.2\n")
    (conf / "aug" / "heavy.yaml").write_text("strength: 0.8\n")
    (conf / "db" / "mysql.yaml").write_text("pool: 4\n")
    (conf / "db" / "postgresql.yaml").write_text("pool: 8\n")
    (conf / "server" / "cache" / "redis.yaml").write_text("# @package _global_\ncache_ttl: 60\n")
    (conf / "server" / "cache" / "memcached.yaml").write_text("slabs: 16\n")
    script = tmp_path / "train.py"
    script.write_text(_HYDRA_SCRIPT)
    return script


def test_hydra_optional_packaged_nested_and_global_groups_become_parameters_hydra_takes(tmp_path: Path) -> None:
    # `optional aug`, `db@backup`, `server/cache` and a `# @package _global_` option were left out of the sweep
    # file (only `model: cnn` forms were read); Hydra's own groups (`override hydra/...`) stay out
    script = _hydra_project_with_every_kind_of_group(tmp_path)
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    assert set(c.space) == {"model", "model.width", "aug", "aug.strength", "backup", "backup.pool",
                            "server.cache", "cache_ttl", "optimizer.lr"}
    assert c.space["backup"] == Categorical(["mysql", "postgresql"])
    assert c.space["server.cache"] == Categorical(["memcached", "redis"])
    assert isinstance(c.space["backup.pool"], Conditional) and c.space["backup.pool"].when == {"backup": "mysql"}
    assert isinstance(c.space["cache_ttl"], Conditional) and c.space["cache_ttl"].when == {"server.cache": "redis"}
    assert "db@backup={backup}" in str(c.command) and "server/cache={server.cache}" in str(c.command)
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    params = {"model": "cnn", "model.width": 40, "aug": "heavy", "aug.strength": 0.5, "backup": "mysql",
              "backup.pool": 6, "server.cache": "redis", "cache_ttl": 30, "optimizer.lr": 0.002}
    argv = render_argv(str(c.command), params)
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = json.loads(done.stdout.strip().splitlines()[-1])
    assert cfg["model"] == {"width": 40} and cfg["aug"] == {"strength": 0.5} and cfg["backup"] == {"pool": 6}
    assert cfg["cache_ttl"] == 30 and cfg["optimizer"] == {"lr": 0.002}
    others = {k: v for k, v in params.items() if k not in ("backup.pool", "cache_ttl")}  # their options are not chosen
    argv = render_argv(str(c.command), {**others, "backup": "postgresql", "server.cache": "memcached"})
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = json.loads(done.stdout.strip().splitlines()[-1])
    assert cfg["backup"] == {"pool": 8} and cfg["server"] == {"cache": {"slabs": 16}} and "cache_ttl" not in cfg


@pytest.mark.parametrize(("decorator", "note"), [
    ('@hydra.main(version_base=None, config_name="cfg")', "not a file named in @hydra.main"),
    ('@hydra.main(version_base=None, config_path="nowhere", config_name="cfg")', "could not be read"),
])
def test_a_hydra_config_that_cannot_be_read_gives_an_override_example_and_says_why(
        tmp_path: Path, decorator: str, note: str) -> None:
    script = tmp_path / "train.py"
    script.write_text(f"import hydra\n{decorator}\ndef main(cfg): ...\n")
    out = write_template(str(script), tmp_path / "sweep.yaml")
    assert note in out.read_text()
    assert load_config(out).command == f"python {script} lr={{lr}}"


def test_a_fraction_gets_a_linear_range_below_one_not_a_log_one_up_to_ten_times_its_default(tmp_path: Path) -> None:
    # dropout 0.1 got {low: 0.01, high: 1.0, log: true}: dropout 1.0 drops everything, 0.5 was as rare as 0.05
    script = tmp_path / "train.py"
    script.write_text("import argparse\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--dropout', type=float, default=0.1)\n"
                      "p.add_argument('--momentum', type=float, default=0.99)\n"
                      "p.add_argument('--lr', type=float, default=0.1)\n")
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    assert c.space == {"dropout": Float(0.0, 0.9), "momentum": Float(0.5, 0.999), "lr": Float(0.01, 1.0, log=True)}


def test_lightning_cli_classes_init_arguments_become_fit_options_that_lightning_cli_takes(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""\
        import lightning.pytorch as pl
        from lightning.pytorch.cli import LightningCLI

        class Model(pl.LightningModule):
            def __init__(self, lr: float = 1e-3, width: int = 64, dropout: float = 0.2, use_bn: bool = False,
                         name: str = "cnn"):
                super().__init__()
                self.save_hyperparameters()

        class Data(pl.LightningDataModule):
            def __init__(self, batch_size: int = 32, num_workers: int = 2):
                super().__init__()
                self.batch_size = batch_size

        def main():
            LightningCLI(Model, Data)

        if __name__ == "__main__":
            main()
        """))
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    assert c.space == {"model.lr": Float(1e-4, 1e-2, log=True), "model.width": Int(16, 256, log=True),
                       "model.dropout": Float(0.0, 0.9), "data.batch_size": Int(8, 128, log=True)}
    argv = render_argv(str(c.command), {"model.lr": 0.003, "model.width": 20, "model.dropout": 0.5,
                                        "data.batch_size": 100})
    assert argv[2] == "fit" and "--model.lr" in argv
    from lightning.pytorch.cli import LightningCLI

    scope = _namespace(script)
    cli = LightningCLI(scope["Model"], scope["Data"], run=False, args=argv[3:],
                       trainer_defaults={"logger": False, "enable_checkpointing": False},
                       save_config_kwargs={"overwrite": True})
    hparams = {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    assert hparams == {"lr": 0.003, "width": 20, "dropout": 0.5, "use_bn": False, "name": "cnn"}
    assert cli.datamodule.batch_size == 100


@pytest.mark.parametrize(("header", "expected"), [
    # Hydra: a primary config in a folder belongs to that group: its keys go under exp., its defaults are exp/ groups
    ("", {"exp/model={exp.model}": "exp.model", "exp.model.width={exp.model.width?}": "exp.model.width",
          "exp.lr={exp.lr}": "exp.lr"}),
    # ... unless it says `# @package _global_`: its keys and its groups' go to the root (`exp/model@model`)
    ("# @package _global_\n", {"exp/model@model={model}": "model", "model.width={model.width?}": "model.width",
                               "lr={lr}": "lr"}),
])
def test_a_hydra_primary_config_in_a_subfolder_reads_its_own_groups_with_overrides_hydra_takes(
        tmp_path: Path, header: str, expected: dict[str, str]) -> None:
    conf = tmp_path / "conf"
    for folder in ("exp/model", "model"):
        (conf / folder).mkdir(parents=True)
    (conf / "exp" / "base.yaml").write_text(header + "defaults:\n  - model: cnn\n  - _self_\nlr: 0.02\n")
    (conf / "exp" / "model" / "cnn.yaml").write_text("width: 7\n")
    (conf / "exp" / "model" / "mlp.yaml").write_text("hidden: 5\n")
    (conf / "model" / "resnet.yaml").write_text("depth: 50\n")  # the root's model group: not the one exp/ uses
    script = tmp_path / "train.py"
    script.write_text(_HYDRA_SCRIPT.replace('config_name="config"', 'config_name="exp/base"'))
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    words = str(c.command).split()[2:]
    assert words == list(expected)
    model, width, lr = expected.values()
    assert c.space[model] == Categorical(["cnn", "mlp"]) and set(c.space) == {model, width, lr}
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    for params in ({model: "cnn", width: 9, lr: 0.05}, {model: "mlp", lr: 0.01}):
        argv = render_argv(str(c.command), params)
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        cfg = json.loads(done.stdout.strip().splitlines()[-1])
        root = cfg if header else cfg["exp"]
        assert root["lr"] == params[lr]
        assert root["model"] == ({"width": 9} if params[model] == "cnn" else {"hidden": 5})


def test_a_hydra_group_whose_default_option_is_in_a_subfolder_lists_every_option_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "model" / "cnn").mkdir(parents=True)
    (conf / "config.yaml").write_text("defaults:\n  - model: cnn/small\n  - _self_\nlr: 0.1\n")
    (conf / "model" / "cnn" / "small.yaml").write_text("width: 8\n")
    (conf / "model" / "cnn" / "big.yaml").write_text("width: 64\n")
    (conf / "model" / "mlp.yaml").write_text("hidden: 3\n")
    script = tmp_path / "train.py"
    script.write_text(_HYDRA_SCRIPT)
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    assert c.space["model"] == Categorical(["cnn/big", "cnn/small", "mlp"])  # Hydra takes model=cnn/big
    assert isinstance(c.space["model.width"], Conditional) and c.space["model.width"].when == {"model": "cnn/small"}
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    for params, model in (({"model": "cnn/big", "lr": 0.2}, {"width": 64}),
                          ({"model": "cnn/small", "model.width": 9, "lr": 0.2}, {"width": 9}),
                          ({"model": "mlp", "lr": 0.2}, {"hidden": 3})):
        argv = render_argv(str(c.command), params)
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"model": model, "lr": 0.2}


@pytest.mark.parametrize("self_first", [False, True])
def test_a_hydra_primary_config_s_value_for_a_group_key_wins_when_self_comes_after_the_group(
        tmp_path: Path, self_first: bool) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    order = "  - _self_\n  - model: cnn\n" if self_first else "  - model: cnn\n  - _self_\n"
    (conf / "config.yaml").write_text(f"defaults:\n{order}model:\n  width: 1000\n")
    (conf / "model" / "cnn.yaml").write_text("width: 32\n")
    (conf / "model" / "mlp.yaml").write_text("hidden: 3\n")
    script = tmp_path / "train.py"
    script.write_text(_HYDRA_SCRIPT)
    c = load_config(write_template(str(script), tmp_path / "sweep.yaml"))
    width = c.space["model.width"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    default = json.loads(done.stdout.strip().splitlines()[-1])["model"]["width"]
    if self_first:  # the option file's 32 wins, and only cnn has a width
        assert default == 32 and isinstance(width, Conditional) and width.when == {"model": "cnn"}
    else:  # config.yaml's 1000 wins, with either option
        assert default == 1000 and isinstance(width, Int) and width.low < 1000 < width.high
        argv = render_argv(str(c.command), {"model": "mlp", "model.width": 700})
        done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert json.loads(done.stdout.strip().splitlines()[-1])["model"] == {"hidden": 3, "width": 700}
