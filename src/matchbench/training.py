"""Training that survives a time limit: a checkpoint after every epoch, resumed on rerun.

A recipe trains into ``<out>/``. While it runs, ``<out>/.resume/`` holds

- ``checkpoint.pt``: everything the next epoch needs (the state of every module, optimiser and
  gradient scaler, the random generator's state, the step, the log so far and the recipe's own
  counters), written atomically after each epoch;
- ``train_log.csv``: the log so far, one row an epoch, rewritten atomically after each epoch
  (the final ``<out>/train_log.csv`` appears only with the model, so nothing that looks
  complete is left by a killed run);
- ``fingerprint.txt``: which run the checkpoint belongs to: the recipe's ``config.json``
  record (recipe, dataset, backbone, training options, seed, input hashes) and a hash of the
  starting weights.

A rerun with the same fingerprint restores the last checkpoint and goes on with the next epoch.
The generator's state is saved, not derived again, so a resumed run computes what an
uninterrupted one does: on the CPU the same bytes (``tests/core/test_training.py`` kills a
run with SIGKILL and compares). A checkpoint of another run (a config value changed since, other
starting weights) is deleted, never mixed in. The folder goes when the model is written.

Checkpoints are read with ``torch.load(..., weights_only=True)``: tensors, numbers, strings
and containers of them, nothing that runs code.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from matchbench.errors import MatchbenchError
from matchbench.io import atomic_path, dumps_json, write_log, write_text

RESUME_DIR = ".resume"
CHECKPOINT = "checkpoint.pt"


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


@dataclass
class Progress:
    """Where a run stands: the last finished epoch (0 before the first), and what it logged."""

    epoch: int = 0
    step: int = 0
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # a recipe's own counters

    @property
    def resumed(self) -> bool:
        return self.epoch > 0


def state_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def identity(cfg: Mapping[str, Any], record: Mapping[str, Any], start: torch.nn.Module) -> dict:
    """What makes two training runs one run: the recipe's ``config.json`` record, the starting
    weights, and the settings that change the bytes computed (device, threads, precision)."""
    return {
        **record,
        "start_state": state_hash(start),
        "runtime": {
            "device": cfg["device"],
            "threads": cfg["threads"],
            "precision": cfg["extract"]["precision"],
        },
    }


class Resume:
    """Per-epoch checkpoints of one training run in ``<out>/.resume/``.

    ``identity``: what makes two runs the same run (the recipe's config.json record and the
    starting weights' :func:`state_hash`); ``objects``: the named modules, optimisers and
    scalers whose state the checkpoint holds; ``tensors``: named tensors restored in place
    (a MoCo queue); ``columns``: the log's columns.
    """

    def __init__(
        self,
        out: Path,
        identity: Mapping[str, Any],
        objects: Mapping[str, Stateful],
        generator: torch.Generator,
        columns: Sequence[str],
        tensors: Mapping[str, torch.Tensor] | None = None,
        what: str = "finetune",
    ) -> None:
        self.dir = Path(out) / RESUME_DIR
        self.fingerprint = hashlib.sha256(dumps_json(dict(identity)).encode()).hexdigest()
        self.objects = dict(objects)
        self.generator = generator
        self.columns = list(columns)
        self.tensors = dict(tensors or {})
        self.what = what

    def restore(self) -> Progress:
        """The last checkpoint of this run, loaded into the objects; a fresh start otherwise."""
        fp_file, ckpt = self.dir / "fingerprint.txt", self.dir / CHECKPOINT
        if not ckpt.is_file() or not fp_file.is_file() or fp_file.read_text() != self.fingerprint:
            if self.dir.exists():  # another run's checkpoint (or none yet): never mix them
                shutil.rmtree(self.dir)
            return Progress()
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            for name, obj in self.objects.items():
                obj.load_state_dict(state["objects"][name])
            for name, t in self.tensors.items():
                t.copy_(state["tensors"][name])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if torch.cuda.is_available() and state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        except Exception as e:  # unpickling, shapes, keys: whatever it is, one line
            reason = (str(e).strip().splitlines() or [""])[0][:120]
            raise MatchbenchError(
                f"{ckpt}: a checkpoint of this run that cannot be restored "
                f"({type(e).__name__}: {reason}); "
                f"delete {self.dir} to train from the start"
            ) from e
        progress = Progress(state["epoch"], state["step"], state["log_rows"], state["values"])
        print(
            f"{self.what}: resumed after epoch {progress.epoch} from {ckpt}",
            file=sys.stderr,
            flush=True,
        )
        return progress

    def save(self, progress: Progress) -> None:
        """Checkpoint the run after ``progress.epoch`` (atomically), and its log so far."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fp_file = self.dir / "fingerprint.txt"
        if not fp_file.is_file():
            write_text(fp_file, self.fingerprint)
        state = {
            "epoch": progress.epoch,
            "step": progress.step,
            "log_rows": progress.log_rows,
            "values": progress.values,
            "objects": {name: obj.state_dict() for name, obj in self.objects.items()},
            "tensors": {name: t.detach().cpu() for name, t in self.tensors.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # nothing should draw from it; saved in case
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        with atomic_path(self.dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        write_log(self.dir / "train_log.csv", self.columns, progress.log_rows)

    def finish(self) -> None:
        """The model is written: the checkpoints are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)
