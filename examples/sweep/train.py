"""A plain PyTorch training script, tuned by `tunelab sweep sweep.yaml` without importing tunelab.

It trains a small MLP on scikit-learn's digits (8x8 images, CPU, seconds) and prints one JSON line per
epoch, which is all a sweep needs: {"step": epoch, "val_loss": ..., "val_acc": ...}. Run it by hand too:

    python train.py --lr 0.01 --width 64 --optimizer adam --epochs 5
"""

from __future__ import annotations

import argparse
import json

import torch
from sklearn.datasets import load_digits
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="adam")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = perm[:1400], perm[1400:]

    model = nn.Sequential(nn.Linear(64, args.width), nn.ReLU(), nn.Dropout(args.dropout), nn.Linear(args.width, 10))
    if args.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in train[torch.randperm(len(train))].split(64):
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(x[val])
            val_loss = loss_fn(out, y[val]).item()
            val_acc = (out.argmax(1) == y[val]).float().mean().item()
        print(json.dumps({"step": epoch, "val_loss": val_loss, "val_acc": val_acc}), flush=True)


if __name__ == "__main__":
    main()
