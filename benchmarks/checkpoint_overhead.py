"""What the per-epoch checkpoint (``matchbench.training``) costs a recipe's training: the same
run timed with checkpoints and with ``Resume.save`` made a no-op, interleaved, as a ratio.

The recipe is the compose track's ``clip-rich`` on the mini-world's vision-language scenes with
the demo's model (``clip-mini``, whose 49,408-token embedding makes its checkpoint the largest
of the demo's recipes: model and AdamW state, about 42 MB) and batch size; epochs are short
here (``--scenes``), so the ratio bounds what the demo's longer epochs pay.

    python benchmarks/checkpoint_overhead.py --out /tmp/ckpt --scenes 512 --epochs 4 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

from matchbench import training
from matchbench.cli import main
from matchbench.config import load_config
from matchbench.tracks.compose.recipe import train


def config(out: Path, scenes: int, epochs: int) -> Path:
    raw = {
        "run": "checkpoint-overhead",
        "seed": 0,
        "device": "cpu",
        "threads": 2,
        "paths": {k: str(out / k) for k in ("data", "results", "reports")},
        "datasets": {
            "mini-vl": {
                "family": "miniworld-vl",
                "options": {
                    "seed": 0,
                    "progress": False,
                    "scenes": {
                        "train": scenes,
                        "sugarcrepe": 8,
                        "aro": 8,
                        "docci_train": 0,
                        "docci_test": 8,
                    },
                },
            }
        },
        "backbones": {
            "clip-mini": {
                "source": "open_clip",
                "arch": "clip-mini",
                "image_size": 64,
                "kwargs": {"text_cfg": {"context_length": 77}},
            }
        },
        "tracks": {
            "compose": {
                "datasets": ["mini-vl"],
                "backbones": ["clip-mini"],
                "finetune": ["clip-mini"],
                "variants": {"rich": {"caption": "rich"}},
                "train": {"epochs": epochs, "batch_size": 64},
            }
        },
    }
    path = out / "config.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("checkpoint-overhead"))
    ap.add_argument("--scenes", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    path = config(args.out, args.scenes, args.epochs)
    for stage in ("download", "prepare"):
        assert main([stage, "--config", str(path), "--dataset", "mini-vl"]) == 0
    cfg = load_config(path)
    save = training.Resume.save
    times: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(args.repeats):
        for mode in ("without", "with") if r % 2 == 0 else ("with", "without"):
            training.Resume.save = save if mode == "with" else (lambda self, progress: None)
            t0 = time.perf_counter()
            train(cfg, "mini-vl", "clip-mini", args.out / f"{mode}-{r}", recipe="clip-rich")
            times[mode].append(time.perf_counter() - t0)
    training.Resume.save = save
    w, wo = statistics.median(times["with"]), statistics.median(times["without"])
    ckpt = next((args.out / "with-0").glob("model.safetensors"), None)
    print(f"scenes {args.scenes}, epochs {args.epochs}, repeats {args.repeats} (interleaved)")
    print(f"with checkpoints / without: {w / wo:.3f} (medians {w:.1f} s / {wo:.1f} s)")
    if ckpt is not None:
        print(f"model.safetensors {ckpt.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main_()
