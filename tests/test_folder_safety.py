"""Deleting a study deletes only its own folder (a marker proves it), and no copy or removal of a
checkpoint follows a symbolic link out of the study's folder (issue 16, item 9)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import tunelab
from tunelab import babysit
from tunelab.checkpoints import (
    MARKER,
    CheckpointPolicy,
    CheckpointStore,
    read_marker,
    remove_study_folder,
    study_folder_refusal,
)
from tunelab.errors import ConfigError, StudyNotFoundError

SECRET = b"the private key of someone else: 0123456789abcdef"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="symbolic links and modes as on POSIX")


def _files(root: Path) -> dict[str, bytes]:
    return {str(Path(d, f).relative_to(root)): Path(d, f).read_bytes() for d, _, fs in os.walk(root) for f in fs
            if not Path(d, f).is_symlink()}


def _write(trial: tunelab.Trial, step: int) -> Path:
    with trial.checkpoint(step) as folder:
        (folder / "state.txt").write_text(f"{trial.number}:{step}")
    return trial.study.checkpoint_path(trial.number, step)


def _unrelated(tmp_path: Path) -> Path:
    """Someone's folder of precious files (with a sub-folder), outside any study."""
    home = tmp_path / "home" / "someone" / "thesis"
    (home / "chapters").mkdir(parents=True)
    (home / "draft.tex").write_text("years of work")
    (home / "chapters" / "one.tex").write_text("chapter one")
    return home


def test_a_database_that_names_an_unrelated_folder_does_not_get_it_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = _unrelated(tmp_path)
    before = _files(victim)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    storage = tunelab.SQLStorage(url)
    # what a writer of a shared database can store: any folder as the study's
    storage.create_study("evil", "minimize", 0, system_attrs={
        "sampler": tunelab.RandomSampler().describe(), "artifact_dir": str(victim)})
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        tunelab.delete_study("evil", url)
    assert _files(victim) == before
    assert "not deleting" in caplog.text and str(victim) in caplog.text and MARKER in caplog.text
    with pytest.raises(StudyNotFoundError):
        tunelab.load_study("evil", url)  # the study itself is deleted


def test_a_folder_named_like_a_study_s_but_holding_other_files_stays(tmp_path: Path) -> None:
    victim = tmp_path / "data-0123abcd"  # the pattern tunelab names folders with, but not tunelab's
    (victim / "trial-0").mkdir(parents=True)
    (victim / "notes.md").write_text("mine")
    assert remove_study_folder({"artifact_dir": str(victim)}) is False
    assert (victim / "notes.md").read_text() == "mine"
    # a marker that names another study, or a marker that is a link, proves nothing either
    (victim / "notes.md").unlink()
    (victim / MARKER).write_text("other")
    assert "another study" in str(study_folder_refusal(victim, "data"))
    assert remove_study_folder({"artifact_dir": str(victim)}, "data") is False and victim.is_dir()
    (victim / MARKER).unlink()
    (tmp_path / "fake-marker").write_text("data")
    (victim / MARKER).symlink_to(tmp_path / "fake-marker")
    assert read_marker(victim) is None
    assert remove_study_folder({"artifact_dir": str(victim)}) is False and victim.is_dir()


def test_a_study_s_own_folder_is_marked_and_removed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    study = tunelab.create_study(name="own study", storage=url, artifact_dir=tmp_path / "art")
    assert not study.artifact_dir.exists()  # made when first needed
    _write(study.ask(), 1)
    assert read_marker(study.artifact_dir) == "own study"
    assert study_folder_refusal(study.artifact_dir, "own study") is None
    tunelab.delete_study("own study", url)
    assert not study.artifact_dir.exists() and (tmp_path / "art").is_dir()


def test_an_existing_folder_is_never_marked(tmp_path: Path) -> None:
    victim = _unrelated(tmp_path)
    store = CheckpointStore(victim, CheckpointPolicy(), "evil")  # a database naming someone's folder
    store.trial_dir(0, create=True)
    assert read_marker(victim) is None
    assert remove_study_folder({"artifact_dir": str(victim)}, "evil") is False
    assert (victim / "draft.tex").read_text() == "years of work"


def test_a_folder_from_before_markers_is_removed_when_it_holds_only_tunelab_s_folders(tmp_path: Path) -> None:
    old = tmp_path / "art" / "cnn-0badc0de"
    (old / "trial-0" / "step-3").mkdir(parents=True)
    (old / "trial-0" / "step-3" / "torch.pt").write_bytes(b"weights")
    (old / "branches" / "trial-0-step-3-12345678").mkdir(parents=True)
    assert study_folder_refusal(old, "other") is not None  # named for another study
    assert remove_study_folder({"artifact_dir": str(old)}, "cnn") is True
    assert not old.exists()


def test_removal_never_follows_a_symbolic_link_out_of_the_folder(tmp_path: Path) -> None:
    victim = _unrelated(tmp_path)
    before = _files(victim)
    url = f"sqlite:///{tmp_path / 'links.db'}"
    study = tunelab.create_study(name="links", storage=url, artifact_dir=tmp_path / "art")
    step = _write(study.ask(), 0)
    (study.artifact_dir / "trial-0" / "outside").symlink_to(victim)
    (step / "outside-dir").symlink_to(victim)
    (step / "outside-file").symlink_to(victim / "draft.tex")
    tunelab.delete_study("links", url)
    assert not study.artifact_dir.exists()
    assert _files(victim) == before
    # a study folder that is itself a link is not deleted, nor what it points to
    target = tmp_path / "art" / "real-0123abcd"
    target.mkdir()
    (target / MARKER).write_text("real")
    link = tmp_path / "art" / "real-89abcdef"
    link.symlink_to(target)
    assert remove_study_folder({"artifact_dir": str(link)}) is False
    assert (target / MARKER).exists() and link.is_symlink()


def test_a_branch_copy_of_a_checkpoint_does_not_copy_what_its_links_point_to(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    (tmp_path / "elsewhere" / "dir").mkdir()
    (tmp_path / "elsewhere" / "dir" / "also").write_bytes(SECRET)
    study = tunelab.create_study(name="b", artifact_dir=tmp_path / "art", sampler=tunelab.RandomSampler(),
                                 checkpoint_policy=CheckpointPolicy(keep_finished=True))
    trial = study.ask()
    trial.suggest_float("lr", 0.001, 0.1)
    step = _write(trial, 2)
    (step / "model.bin").symlink_to(secret)  # put there by whoever can write the shared artifact folder
    (step / "data").symlink_to(tmp_path / "elsewhere" / "dir")
    (step / "dangling").symlink_to(tmp_path / "nowhere")
    study.tell(trial, 1.0)

    number = babysit.branch(study, trial.number, 2, note="roll back")  # the public path of a roll-back
    copy = Path(study.get_trial(number).system_attrs["branch"]["checkpoint"])
    assert copy.is_dir() and copy.parent.name == "branches"
    for path in copy.rglob("*"):
        if not path.is_symlink() and path.is_file():
            assert SECRET not in path.read_bytes(), path
    assert (copy / "state.txt").read_text() == "0:2"
    for name in ("model.bin", "data", "dangling"):
        assert (copy / name).is_symlink(), name  # kept as links, never copied through
    assert os.readlink(copy / "model.bin") == str(secret)

    # a checkpoint folder that is itself a link is not copied at all
    store = CheckpointStore(study.artifact_dir, CheckpointPolicy(), "b")
    linked = study.artifact_dir / "trial-0" / "step-5"
    linked.symlink_to(tmp_path / "elsewhere" / "dir")
    with pytest.raises(ConfigError, match="symbolic link"):
        store.snapshot(0, 5)
