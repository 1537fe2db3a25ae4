"""Which torch device a run uses: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked before any work starts; and
whether the CPU computes bf16 natively."""

from __future__ import annotations

import torch

from davs.errors import DavsError


class DeviceError(DavsError, ValueError):
    """The requested device does not exist on this machine."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first GPU if there is one, else the CPU; an unavailable device is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine "
                              f"(torch {torch.__version__}): use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} requested but this machine has "
                              f"{torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def cpu_has_bf16_units() -> bool:
    """True when this CPU has AMX tiles (Intel Sapphire Rapids and later): oneDNN then runs bf16 convolutions and
    matrix products on them (the speed-up per stage: ``benchmarks/train.py`` with and without ``--no-amp``,
    ``benchmarks/results/train_bf16.json``). Elsewhere bf16 on the CPU is emulated and slower than fp32."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume none
        return False
