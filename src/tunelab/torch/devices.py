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


def unavailable(device: torch.device) -> str | None:
    """Why this process cannot use ``device`` (its backend says it is not available, or it has no
    device of that index), or None when it can, as far as torch's ``torch.<type>`` module tells."""
    if device.type in ("cpu", "meta"):
        return None
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    if callable(is_available) and not is_available():
        return f"{device.type} is not available in this process (torch.{device.type}.is_available() is False)"
    count = getattr(backend, "device_count", None)
    if device.index is not None and callable(count) and device.index >= count():
        return f"there is no {device}: this process sees {count()} {device.type} device(s)"
    return None
