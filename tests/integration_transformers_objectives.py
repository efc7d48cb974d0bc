"""Tiny Hugging Face models and data for tests/test_integration_transformers.py, importable by the
worker processes of a study run with n_workers=2 (no download: the model is built from a config)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments, set_seed

import tunelab

torch.set_num_threads(1)

VOCAB, LENGTH, MARK = 50, 8, 7  # the label: whether token MARK appears in the sequence


class MarkDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Random token sequences; label 1 when token 7 appears, else 0 (about half of each)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(8, VOCAB, (n, LENGTH), generator=g)  # no 7 anywhere
        marked = torch.rand(n, generator=g) < 0.5
        where = torch.randint(0, LENGTH, (n,), generator=g)
        ids[marked, where[marked]] = MARK
        self.ids, self.labels = ids, marked.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long),
                "labels": self.labels[i]}


TRAIN, EVAL = MarkDataset(64, seed=0), MarkDataset(32, seed=1)  # 8 steps per epoch at batch 8


def tiny_model(seed: int = 0) -> BertForSequenceClassification:
    set_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=LENGTH, num_labels=2)
    return BertForSequenceClassification(config)


def training_args(output_dir: str, **kw: Any) -> TrainingArguments:
    defaults: dict[str, Any] = dict(
        use_cpu=True, report_to=[], save_strategy="no", per_device_train_batch_size=8,
        per_device_eval_batch_size=32, num_train_epochs=2, eval_strategy="steps", eval_steps=4,
        logging_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    return TrainingArguments(output_dir=output_dir, **{**defaults, **kw})


def tiny_trainer(output_dir: str, callbacks: list[Any] | None = None, **kw: Any) -> Trainer:
    return Trainer(model=tiny_model(), args=training_args(output_dir, **kw), train_dataset=TRAIN,
                   eval_dataset=EVAL, callbacks=callbacks)


def make_trainer(trial: tunelab.Trial) -> Trainer:
    """search()'s trainer_factory: the trial's learning rate, a folder of its own."""
    return tiny_trainer(str(trial.study.artifact_dir / f"hf-{trial.number}"),
                        learning_rate=trial.params["learning_rate"])
