"""Batched SimCLR augmentations (matchbench.tracks.ssl.augment) against per-image torchvision v2.

Both make two views of the same uint8 batch with the same operations (random resized crop,
flip, rotation, colour jitter with hue, grayscale), side by side in one run; the ratio is
what counts on a shared CPU.

    python benchmarks/augment_throughput.py --batch 256 --size 32 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.transforms import v2

from matchbench.tracks.ssl.augment import augment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = {
        "crop_scale": [0.5, 1.0],
        "rotation": 180,
        "color_jitter": 0.4,
        "hue": 0.5,
        "grayscale": 0.2,
    }
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    per_image = v2.Compose(
        [
            v2.RandomRotation(cfg["rotation"]),
            v2.RandomResizedCrop(args.size, scale=tuple(cfg["crop_scale"]), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.5)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
    )
    gen = torch.Generator().manual_seed(0)
    dev = torch.device(args.device)

    def batched() -> None:
        augment(images.to(dev).float() / 255, gen, cfg)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def torchvision_loop() -> None:
        torch.stack([per_image(im) for im in images]).to(dev).float() / 255

    results = {}
    for name, fn in (("batched", batched), ("torchvision per image", torchvision_loop)):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        results[name] = args.batch / statistics.median(times)
        print(f"{name:>22}: {results[name]:10.0f} images/s (median of {args.repeats})")
    print(f"{'ratio':>22}: {results['batched'] / results['torchvision per image']:.1f}x")


if __name__ == "__main__":
    main()
