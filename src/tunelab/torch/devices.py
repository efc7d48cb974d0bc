"""Where a model trains: :func:`resolve_device`."""

from __future__ import annotations

import torch

from tunelab.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'``: CUDA when present, else the CPU; anything else as ``torch.device`` reads it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
