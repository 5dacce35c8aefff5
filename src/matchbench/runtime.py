"""Where seeds, threads and the device are set, and where images become features: one place.

Every stage that runs a network opens with :func:`start` (threads, seed, device, autocast
dtype) and embeds through :func:`embed` or :func:`forward` (uint8 batch → normalised, on the
device, under the autocast of ``extract.precision``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from matchbench.errors import MatchbenchError
from matchbench.images import normalise


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (1-3 s in every job; it only sets inductor's flag, and matchbench
    compiles nothing)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # pragma: no cover - another torch: the public call
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    deterministic_algorithms()
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def set_threads(threads: int) -> None:
    # A fixed count: CPU reductions may split differently with another count.
    torch.set_num_threads(max(1, threads))


MAX_AUTO_WORKERS = 8


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (Linux: what
    ``taskset`` or a cluster's cgroup cpuset gives the job), else every CPU of the machine.
    CPU quotas (``cpu.max``) are not seen by either."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return len(affinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS, Windows


def loader_workers(cfg: dict[str, Any]) -> int:
    """DataLoader worker processes for ``extract.workers``: the integer as given, or for
    ``auto`` the usable CPUs (:func:`usable_cpus`) less the job's torch threads
    (``threads``, kept for the forward pass), at least 1 and at most 8.

    At least 1, so that decoding overlaps the forward pass even when the job's threads take
    every CPU; at most 8, so that a job on a large node does not start dozens of processes
    (each with its own prefetched batches): give an integer to go beyond.
    """
    workers = cfg["extract"]["workers"]
    if workers != "auto":
        return int(workers)
    return max(1, min(MAX_AUTO_WORKERS, usable_cpus() - max(1, cfg["threads"])))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MatchbenchError(
            "device: 'cuda' was asked for but no GPU is visible (set device: auto or cpu)"
        )
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@dataclass(frozen=True)
class Runtime:
    """What a stage's network runs on: the device, the autocast dtype (None = fp32) and the
    seeded generator every random draw of the stage comes from."""

    device: torch.device
    dtype: torch.dtype | None
    generator: torch.Generator

    @contextmanager
    def autocast(self) -> Iterator[None]:
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            yield


def start(cfg: dict[str, Any]) -> Runtime:
    """The preamble of every stage that runs a network: threads, seed, device, precision."""
    set_threads(cfg["threads"])
    generator = seed_everything(cfg["seed"])
    device = resolve_device(cfg["device"])
    return Runtime(device, autocast_dtype(cfg["extract"]["precision"], device), generator)


def prepare_batch(batch: torch.Tensor, backbone: Any, device: torch.device) -> torch.Tensor:
    """A uint8 batch (B, 3, H, W) → float, normalised as ``backbone``'s weights expect, on ``device``."""
    x = batch.to(device, non_blocking=True).float().div_(255)
    x = normalise(x, backbone.mean, backbone.std)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.inference_mode()
def embed(
    backbone: Any,
    loader: Iterable[torch.Tensor],
    device: torch.device,
    dtype: torch.dtype | None,
) -> np.ndarray:
    """L2-normalised features of every uint8 batch (B, 3, H, W) of ``loader``, float32 (N, D).

    The one embedding path: extraction feeds it a DataLoader, training's learning-curve
    monitor slices of an in-memory tensor.
    """
    out = []
    for batch in loader:
        x = prepare_batch(batch, backbone, device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            f = backbone.encode_image(x)
        out.append(torch.nn.functional.normalize(f.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)
