"""Tune a Hugging Face Trainer's learning rate with tunelab: a tiny BERT (built from a config, no
download) learns whether token 7 appears in a sequence; ASHA stops the hopeless rates early."""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import tunelab
from tunelab.integrations.transformers import search

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
OUT = tempfile.mkdtemp(prefix="tunelab-hf-")


class MarkDataset(torch.utils.data.Dataset):
    """Random sequences of 8 tokens; the label says whether token 7 is among them."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(8, 50, (n, 8), generator=g)
        self.labels = (torch.rand(n, generator=g) < 0.5).long()
        where = torch.randint(0, 8, (n,), generator=g)
        self.ids[self.labels == 1, where[self.labels == 1]] = 7

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


train_data, eval_data = MarkDataset(512, seed=0), MarkDataset(64, seed=1)


def make_trainer(trial):
    """One trial's Trainer: the searched learning rate, an evaluation every 16 steps."""
    transformers.set_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8, num_labels=2)
    args = TrainingArguments(
        output_dir=os.path.join(OUT, f"trial-{trial.number}"), learning_rate=trial.params["learning_rate"],
        num_train_epochs=3, per_device_train_batch_size=16, eval_strategy="steps", eval_steps=16,
        save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=BertForSequenceClassification(config), args=args,
                      train_dataset=train_data, eval_dataset=eval_data)
    trainer.remove_callback(transformers.PrinterCallback)  # quiet: tunelab keeps the curves
    return trainer


if __name__ == "__main__":
    best = search(
        make_trainer,
        {"learning_rate": tunelab.Float(1e-4, 1e-1, log=True)},
        n_trials=8,
        monitor="eval_loss",
        pruner=tunelab.SuccessiveHalvingPruner(min_resource=48, reduction_factor=2),  # a rung at step 48
        seed=0,
    )
    pruned = best.study.get_trials([tunelab.TrialState.PRUNED])
    print(f"best trial {best.number}: eval_loss {best.objective:.4f} "
          f"with learning_rate {best.hyperparameters['learning_rate']:.2e}")
    print(f"pruned: {len(pruned)} of {len(best.study.trials)} trials, at steps "
          f"{sorted(t.system_attrs['pruned']['step'] for t in pruned)}")
