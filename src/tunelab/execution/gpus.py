"""GPUs for local worker processes: which devices there are, and how trials share them.

Knows nothing of studies. The engine asks :func:`plan_gpus` for a :class:`GpuPlan` before any
trial runs, and gives each worker process of the pool the environment of one *slot*
(:func:`slot_environment`): ``CUDA_VISIBLE_DEVICES`` set to the slot's devices before the process
imports anything of the user's, and ``TUNELAB_GPUS`` (the same list, for information). A worker
keeps its slot for its life and a replacement takes the slot of the worker it replaces, because
CUDA cannot move a process to another device once it has started.

Devices come from, in this order:

1. an explicit list (``gpus=[0, 1]``: ids or UUIDs);
2. ``TUNELAB_FAKE_GPUS=N``: N fake devices ``"0"`` .. ``"N-1"`` (tests, machines without a GPU);
3. ``CUDA_VISIBLE_DEVICES``, its entries as given (ids or UUIDs; empty: no devices; an entry such
   as ``-1`` hides it and every entry after it, as CUDA does);
4. ``nvidia-smi --query-gpu=index --format=csv,noheader`` (no such program, or it fails: no devices).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunelab.errors import ConfigError

logger = logging.getLogger("tunelab")

FAKE_GPUS_VAR = "TUNELAB_FAKE_GPUS"
"""N fake devices "0".."N-1" (for tests and machines without a GPU)."""
ASSIGNED_GPUS_VAR = "TUNELAB_GPUS"
"""Set in each worker process: its devices, comma-separated (as ``CUDA_VISIBLE_DEVICES``)."""
VISIBLE_DEVICES_VAR = "CUDA_VISIBLE_DEVICES"
NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index", "--format=csv,noheader")
_NVIDIA_SMI_TIMEOUT = 20.0  # seconds; a driver in trouble can hang it
_FRACTION_TOLERANCE = 0.01  # 1/3 may be written 0.33 or 0.333: |g * round(1/g) - 1| up to this


@dataclass(frozen=True)
class Devices:
    """The devices found, and where they were found (for messages)."""

    ids: tuple[str, ...]
    source: str


def find_devices(explicit: Sequence[int | str] | str | None = None) -> Devices:
    """The devices trials may use and where they came from (see the module docstring for the order)."""
    if explicit is not None:
        return Devices(normalize_devices(explicit), "gpus=")
    fake = os.environ.get(FAKE_GPUS_VAR)
    if fake is not None and fake.strip() != "":
        try:
            n = int(fake.strip())
        except ValueError:
            n = -1
        if n < 0:
            raise ConfigError(f"{FAKE_GPUS_VAR} must be a whole number of fake devices >= 0, got {fake!r}")
        return Devices(tuple(str(i) for i in range(n)), FAKE_GPUS_VAR)
    visible = os.environ.get(VISIBLE_DEVICES_VAR)
    if visible is not None:
        return Devices(_parse_visible(visible), VISIBLE_DEVICES_VAR)
    return Devices(_query_nvidia_smi(), "nvidia-smi")


def discover_devices(explicit: Sequence[int | str] | str | None = None) -> list[str]:
    """The ids (or UUIDs) of the devices trials may use, as strings; empty when there are none.

    >>> discover_devices([0, 2])
    ['0', '2']
    """
    return list(find_devices(explicit).ids)


def normalize_devices(gpus: object) -> tuple[str, ...]:
    """``gpus=`` as device strings: a list of ids (``[0, 1]``) or UUIDs, or a comma-separated string.

    ConfigError for anything else (a bare number, a negative id, an empty or repeated entry).
    """
    if isinstance(gpus, str):
        items: list[object] = [part.strip() for part in gpus.split(",")] if gpus.strip() else []
    elif isinstance(gpus, Sequence) and not isinstance(gpus, (bytes, bytearray)):
        items = list(gpus)
    else:
        raise ConfigError(
            f"gpus must be a list of device ids or UUIDs such as [0, 1] (or None to find them), got {gpus!r}; "
            "for the first two devices pass gpus=[0, 1]"
        )
    out: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (numbers.Integral, str)):
            raise ConfigError(f"gpus entries must be device ids (0, 1, ...) or UUIDs, got {item!r} in {gpus!r}")
        text = str(int(item)) if isinstance(item, numbers.Integral) else item.strip()
        if isinstance(item, numbers.Integral) and item < 0:
            raise ConfigError(f"gpus entries must be device ids >= 0, got {item!r} in {gpus!r}")
        if not text or "," in text or any(c.isspace() for c in text):
            raise ConfigError(f"gpus entries must be single device ids or UUIDs, got {item!r} in {gpus!r}")
        if text in out:
            raise ConfigError(f"gpus names device {text!r} twice in {gpus!r}; list each device once")
        out.append(text)
    return tuple(out)


def _parse_visible(value: str) -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES``'s entries as given; a negative index ends the list, as in CUDA."""
    out: list[str] = []
    for part in value.split(","):
        entry = part.strip()
        if not entry:
            continue
        if entry.startswith("-"):
            break
        out.append(entry)
    return tuple(out)


def _query_nvidia_smi() -> tuple[str, ...]:
    try:
        done = subprocess.run(
            list(NVIDIA_SMI), capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):  # not installed, not executable, hung
        return ()
    if done.returncode != 0:
        logger.debug("nvidia-smi failed (exit %s): %s", done.returncode, done.stderr.strip())
        return ()
    return tuple(line.strip() for line in done.stdout.splitlines() if line.strip())


@dataclass(frozen=True)
class GpuShare:
    """``gpus_per_trial`` read: each trial gets ``devices_per_trial`` whole devices, or (when that
    is 1) shares its one device with up to ``trials_per_device - 1`` other trials."""

    devices_per_trial: int
    trials_per_device: int


def parse_gpus_per_trial(gpus_per_trial: object) -> GpuShare | None:
    """Validate ``gpus_per_trial``: None for 0 or None (no GPUs), else how trials and devices pair up.

    A positive whole number (each trial gets that many devices) or a fraction that divides 1
    (0.5, 0.25, 1/3: each device holds that many trials); ConfigError for anything else.
    """
    if gpus_per_trial is None:
        return None
    if isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, numbers.Real):
        raise ConfigError(
            f"gpus_per_trial must be a number (0: no GPUs, 1, 2, ...: whole devices per trial, 0.5, 0.25, ...: "
            f"trials sharing a device), got {gpus_per_trial!r}"
        )
    g = float(gpus_per_trial)
    if math.isnan(g) or math.isinf(g) or g < 0:
        raise ConfigError(f"gpus_per_trial must be a finite number >= 0 (0: no GPUs), got {gpus_per_trial!r}")
    if g == 0:
        return None
    if g >= 1:
        if g != int(g):
            raise ConfigError(
                f"gpus_per_trial above 1 must be a whole number of devices, got {gpus_per_trial!r}; "
                f"use {math.floor(g)} or {math.ceil(g)}"
            )
        return GpuShare(int(g), 1)
    per_device = round(1.0 / g)
    if per_device < 1 or abs(g * per_device - 1.0) > _FRACTION_TOLERANCE:
        lower, upper = math.floor(1.0 / g), math.ceil(1.0 / g)
        raise ConfigError(
            f"gpus_per_trial below 1 must divide one device evenly (1/2, 1/3, 1/4, ...), got {gpus_per_trial!r}; "
            f"use 1/{lower} or 1/{upper} (a trial never straddles two devices)"
        )
    return GpuShare(1, per_device)


def allocate(devices: Sequence[str], share: GpuShare) -> list[tuple[str, ...]]:
    """The slots (device groups, one trial each at a time) in the order workers take them.

    Whole devices: consecutive groups of ``devices_per_trial`` (devices left over are unused).
    Shared devices: each device once, then each once again, ... so that fewer workers than
    slots spread over the devices (one per device first) rather than pile onto one.
    A slot never straddles two devices unless a trial asked for several.

    >>> allocate(["0", "1", "2", "3"], GpuShare(2, 1))
    [('0', '1'), ('2', '3')]
    >>> allocate(["0", "1"], GpuShare(1, 2))
    [('0',), ('1',), ('0',), ('1',)]
    """
    k = share.devices_per_trial
    groups = [tuple(devices[i:i + k]) for i in range(0, len(devices) - k + 1, k)]
    return [group for _ in range(share.trials_per_device) for group in groups]


@dataclass(frozen=True)
class GpuPlan:
    """What the pool needs: one slot per worker (``slots[i]`` is worker i's, and its replacements')."""

    slots: tuple[tuple[str, ...], ...]
    devices: Devices
    share: GpuShare

    @property
    def n_workers(self) -> int:
        return len(self.slots)


def plan_gpus(
    gpus_per_trial: object, gpus: Sequence[int | str] | str | None, n_workers: int
) -> GpuPlan | None:
    """Validate the GPU options and pick one slot for each of ``n_workers`` workers (None: no GPUs).

    Looks for devices only when ``gpus_per_trial`` > 0. More workers than slots are cut to the
    slots, with a warning: a worker runs one trial at a time and keeps its devices.
    """
    checked = check_gpus(gpus_per_trial, gpus)
    if checked is None:
        return None
    share, found = checked
    slots = allocate(found.ids, share)
    unused = len(found.ids) % share.devices_per_trial
    if unused:
        logger.warning(
            "gpus_per_trial=%s: %d of the %d devices (%s) stay unused, they make no whole group",
            gpus_per_trial, unused, len(found.ids), ", ".join(found.ids[len(found.ids) - unused:]),
        )
    if n_workers > len(slots):
        logger.warning(
            "n_workers=%d is more than the %d trial(s) the GPUs hold at once (%d device(s) from %s, "
            "gpus_per_trial=%s): running %d worker(s); each keeps its devices and runs one trial at a time",
            n_workers, len(slots), len(found.ids), found.source, gpus_per_trial, len(slots),
        )
    return GpuPlan(tuple(slots[:n_workers]), found, share)


def check_gpus(gpus_per_trial: object, gpus: Sequence[int | str] | str | None) -> tuple[GpuShare, Devices] | None:
    """Validate the GPU options against the devices found here, logging nothing: how trials share devices
    and which devices, or None for no GPUs. ConfigError as :func:`plan_gpus` raises it."""
    share = parse_gpus_per_trial(gpus_per_trial)
    if share is None:
        if gpus is not None:
            normalize_devices(gpus)  # a malformed list is an error whatever else is set
            raise ConfigError(
                f"gpus={gpus!r} has no effect with gpus_per_trial=0; pass gpus_per_trial=1 (a whole device "
                "per trial) or a fraction such as 0.5, or leave gpus=None"
            )
        return None
    found = find_devices(gpus)
    if not found.ids:
        raise ConfigError(f"gpus_per_trial={gpus_per_trial!r} but {_no_devices(found)}")
    if share.devices_per_trial > len(found.ids):
        raise ConfigError(
            f"gpus_per_trial={gpus_per_trial!r} asks for more devices per trial than there are: "
            f"{len(found.ids)} found ({', '.join(found.ids)}, from {found.source}); lower gpus_per_trial "
            "or make more devices visible"
        )
    return share, found


def _no_devices(found: Devices) -> str:
    if found.source == "gpus=":
        where = "gpus= is an empty list"
    elif found.source == FAKE_GPUS_VAR:
        where = f"{FAKE_GPUS_VAR}=0"
    elif found.source == VISIBLE_DEVICES_VAR:
        where = f"{VISIBLE_DEVICES_VAR}={os.environ.get(VISIBLE_DEVICES_VAR, '')!r} makes none visible"
    else:
        where = f"{VISIBLE_DEVICES_VAR} is not set and `{' '.join(NVIDIA_SMI)}` lists none (or is not installed)"
    return (
        f"no GPU was found: {where}; pass the devices with gpus=[0, 1, ...], set {VISIBLE_DEVICES_VAR}, "
        f"or set {FAKE_GPUS_VAR}=N for N fake devices (tests, machines without a GPU)"
    )


def slot_environment(slot: Sequence[str]) -> dict[str, str]:
    """The environment a worker process that owns ``slot`` starts with."""
    devices = ",".join(slot)
    return {VISIBLE_DEVICES_VAR: devices, ASSIGNED_GPUS_VAR: devices}


def assigned_gpus(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """In a worker process that owns a slot: its devices (from ``TUNELAB_GPUS``); None elsewhere."""
    value = (os.environ if environ is None else environ).get(ASSIGNED_GPUS_VAR)
    if value is None:
        return None
    return [part for part in value.split(",") if part]
