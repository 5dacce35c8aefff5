"""Retrieval at scale: the search engine of the retrieval track (`matchbench.search`) on
synthetic float16 descriptors, from 1M to 10M vectors, exact and through faiss indexes.

For each dimension the script writes a clustered collection as float16 `.npy` shards (500K
rows each, as the feature store holds them) under `--scratch`, 1,000 queries drawn near
database rows and a training sample, then runs each (size, index) in a fresh subprocess, so
that every peak memory is its own:

- `Flat`: `exact_search` over the memory-mapped shards, opened one at a time (the exact
  answer every recall is measured against; its "index" is the shards themselves);
- an IVF index (`IVF4096,PQ64`): trained once per dimension on the sample (`train_index`),
  then filled per size (`add_shards`) and searched with each `--nprobe` (the first is the
  headline, the others a sweep);
- `HNSW32`: `build_index` (no training), searched with efSearch = k; a size is skipped when
  the build, extrapolated linearly from the last size measured, would pass `--max-build-s`.

It reports build time (train + add), peak RSS, index size on disk (`faiss.write_index`),
queries/s for `--queries` queries at `--k` and recall@k against the exact answer.

`--compare SIZE ...` also times the pipeline's exact search against a bare faiss call on the
same data in one process (`faiss.IndexFlatIP` holding everything in memory, one `search`),
alternating the order, and reports the paired median of bare time / pipeline time (the
pipeline's speed relative to bare faiss). The shards are deleted at the end (`--keep` keeps
them). From the repository root:

    python benchmarks/retrieval_scale.py --scratch /tmp/retrieval_scale --dims 512 \
        --sizes 1M 2M 5M 10M --index Flat IVF4096,PQ64 HNSW32 --compare 1M --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARD_ROWS = 500_000
SUPER = 100  # super-clusters ...
CENTRES = 10_000  # ... of 100 cluster centres each
CENTRE_SPREAD = 1.0  # a centre: unit(super + 1.0 * random unit vector), ~0.5 cosine to siblings
POINT_NOISE = 0.6  # a point: unit(centre + noise of norm ~0.6), ~0.74 cosine to cluster mates
QUERY_NOISE = 0.3  # a query: unit(a database row + noise of norm ~0.3)
TRAIN_ROWS = 160_000  # >= 39 x 4096, faiss's smallest advised sample for 4096 centroids
SEED = 2024


def parse_size(text: str) -> int:
    units = {"K": 1_000, "M": 1_000_000}
    t = text.strip().upper()
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def human(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}K"


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def peak_rss() -> int:
    """This process's peak resident set (bytes): ``VmHWM``, not ``getrusage``'s ``ru_maxrss``,
    which Linux carries over an ``exec`` from the forking parent (a child of a 1 GB parent
    reports at least 1 GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- data


def data_dir(scratch: Path, dim: int) -> Path:
    return scratch / f"d{dim}"


def shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard_{i:04d}.npy"


def centres(dim: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, dim, 0])
    sup = unit(rng.standard_normal((SUPER, dim), dtype=np.float32))
    offset = unit(rng.standard_normal((CENTRES, dim), dtype=np.float32))
    return unit(sup[np.arange(CENTRES) // (CENTRES // SUPER)] + CENTRE_SPREAD * offset)


def write_shard(path: Path, dim: int, i: int, cen: np.ndarray) -> None:
    """Shard i: SHARD_ROWS unit vectors around random centres, float16, written atomically."""
    rng = np.random.default_rng([SEED, dim, 1, i])
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(SHARD_ROWS, dim))
    for s in range(0, SHARD_ROWS, 50_000):
        x = rng.standard_normal((50_000, dim), dtype=np.float32)
        x *= POINT_NOISE / math.sqrt(dim)
        x += cen[rng.integers(0, CENTRES, 50_000)]
        out[s : s + 50_000] = unit(x)
    out.flush()
    del out
    os.replace(tmp, path)


def ensure_data(scratch: Path, dim: int, n_max: int, n_queries: int) -> Path:
    folder = data_dir(scratch, dim)
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(n_max / SHARD_ROWS)
    missing = [i for i in range(n_shards) if not shard_path(folder, i).exists()]
    need = len(missing) * SHARD_ROWS * dim * 2
    free = shutil.disk_usage(folder).free
    if need > free - (5 << 30):
        raise SystemExit(
            f"{folder}: {need / 2**30:.1f} GiB of shards to write, {free / 2**30:.1f} free"
        )
    cen = centres(dim)
    t0 = time.perf_counter()
    for i in missing:
        write_shard(shard_path(folder, i), dim, i, cen)
        print(f"  wrote {shard_path(folder, i)}", file=sys.stderr, flush=True)
    if missing:
        print(
            f"  d={dim}: {len(missing)} shards in {time.perf_counter() - t0:.0f} s", file=sys.stderr
        )
    qpath = folder / f"queries_{n_queries}.npy"
    if not qpath.exists():
        rng = np.random.default_rng([SEED, dim, 2])
        first = np.load(shard_path(folder, 0), mmap_mode="r")
        rows = np.sort(rng.choice(SHARD_ROWS, n_queries, replace=False))
        q = np.asarray(first[rows], dtype=np.float32)
        q += QUERY_NOISE / math.sqrt(dim) * rng.standard_normal(q.shape, dtype=np.float32)
        np.save(qpath, unit(q))
    tpath = folder / "train.npy"
    if not tpath.exists():
        rng = np.random.default_rng([SEED, dim, 3])
        pool = min(n_shards, 2) * SHARD_ROWS  # a sample of the first 1M rows
        rows = np.sort(rng.choice(pool, TRAIN_ROWS, replace=False))
        parts = []
        for i in range(min(n_shards, 2)):
            sel = rows[(rows >= i * SHARD_ROWS) & (rows < (i + 1) * SHARD_ROWS)] - i * SHARD_ROWS
            parts.append(np.asarray(np.load(shard_path(folder, i), mmap_mode="r")[sel], np.float32))
        np.save(tpath, np.concatenate(parts))
    return folder


def open_shards(folder: Path, n: int):
    """The first n rows, one memory-mapped shard at a time (each unmapped before the next)."""
    for i in range(math.ceil(n / SHARD_ROWS)):
        shard = np.load(shard_path(folder, i), mmap_mode="r")
        yield shard[: min(SHARD_ROWS, n - i * SHARD_ROWS)]
        del shard


# --------------------------------------------------------------------------- children


def set_threads(threads: int | None) -> Any:
    if not threads:
        return None
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(threads)
    return threadpool_limits(threads)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this (fresh) process; returns its figures."""
    import faiss

    from matchbench.search import (
        add_shards,
        exact_search,
        recall_at_k,
        search_index,
        set_params,
        train_index,
    )

    limits = set_threads(spec["threads"])  # noqa: F841 (kept alive for the process)
    folder, n, k, dim = Path(spec["folder"]), spec["n"], spec["k"], spec["dim"]
    q = np.load(folder / f"queries_{spec['queries']}.npy")
    gt_path = folder / f"gt_{n}_k{k}_q{len(q)}.npy"
    out: dict[str, Any] = {"threads": faiss.omp_get_max_threads(), "queries": len(q)}
    if spec["what"] == "exact":
        t0 = time.perf_counter()
        _, idx = exact_search(q, open_shards(folder, n), k)
        out["search_s"] = time.perf_counter() - t0
        np.save(gt_path, idx)
        out["build_s"] = 0.0
        out["size_bytes"] = n * dim * 2  # the float16 shards themselves
        out["recall"] = 1.0
    elif spec["what"] == "train":
        train = np.load(folder / "train.npy")
        t0 = time.perf_counter()
        index = train_index(spec["factory"], dim, train, gpu=False)
        out["train_s"] = time.perf_counter() - t0
        faiss.write_index(index, spec["trained"])
    else:  # fill: a trained index (IVF) or an empty one (HNSW), filled, searched, saved
        if spec.get("trained"):
            index = faiss.read_index(spec["trained"])
        else:
            index = train_index(spec["factory"], dim, None, gpu=False)
        t0 = time.perf_counter()
        add_shards(index, open_shards(folder, n))
        out["add_s"] = time.perf_counter() - t0
        gt = np.load(gt_path)
        out["sweep"] = []
        for params in spec["params"]:  # the first is the headline
            set_params(index, params)
            t0 = time.perf_counter()
            _, idx = search_index(index, q, k)
            seconds = time.perf_counter() - t0
            out["sweep"].append(
                {"params": params, "search_s": seconds, "recall": recall_at_k(idx, gt, k)}
            )
        out["search_s"], out["recall"] = out["sweep"][0]["search_s"], out["sweep"][0]["recall"]
        path = folder / "index.tmp"
        faiss.write_index(index, str(path))
        out["size_bytes"] = path.stat().st_size
        path.unlink()
    out["peak_rss"] = peak_rss()
    return out


def run_child(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {spec['what']} {spec.get('factory', '')} failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    out["load"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return out


# --------------------------------------------------------------------------- paired comparison


def compare(folder: Path, dim: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline exact search (memory-mapped shards) against bare faiss (all in memory), same
    process, same threads, alternating which goes first."""
    import faiss

    from matchbench.search import exact_search

    q = np.load(folder / f"queries_{args.queries}.npy")
    index = faiss.IndexFlatIP(dim)
    for shard in open_shards(folder, n):
        index.add(np.asarray(shard, dtype=np.float32))
    times: dict[str, list[float]] = {"pipeline": [], "bare": []}
    results = {}

    def pipeline() -> tuple[np.ndarray, np.ndarray]:
        return exact_search(q, open_shards(folder, n), args.k)

    def bare() -> tuple[np.ndarray, np.ndarray]:
        return index.search(q, args.k)

    for r in range(args.repeats):
        for name, fn in [("pipeline", pipeline), ("bare", bare)][:: 1 if r % 2 == 0 else -1]:
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
        print(
            f"  compare d={dim} n={human(n)} repeat {r}: pipeline {times['pipeline'][-1]:.1f} s,"
            f" bare {times['bare'][-1]:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    ratios = [b / p for b, p in zip(times["bare"], times["pipeline"], strict=True)]
    (ps, pi), (bs, bi) = results["pipeline"], results["bare"]
    return {
        "dim": dim,
        "n": n,
        "threads": faiss.omp_get_max_threads(),
        "pipeline_s": times["pipeline"],
        "bare_s": times["bare"],
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "same_index_fraction": float(np.mean(pi == bi)),
        "max_score_diff": float(np.abs(ps - bs).max()),
    }


# --------------------------------------------------------------------------- driver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=Path, help="where the shards are written (required)")
    ap.add_argument("--dims", type=int, nargs="+", default=[512])
    ap.add_argument("--sizes", nargs="*", default=["1M"], help="database sizes: 1M 2M 5M 10M")
    ap.add_argument("--index", nargs="+", default=["Flat", "IVF4096,PQ64", "HNSW32"])
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[32], help="IVF; the first: headline")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[0], help="HNSW efSearch (0: k)")
    ap.add_argument("--max-build-s", type=float, default=600.0, help="HNSW build time limit")
    ap.add_argument("--compare", nargs="*", default=[], help="sizes for the pipeline/bare ratio")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="BLAS/OpenMP threads (0: default)")
    ap.add_argument("--keep", action="store_true", help="keep the shards afterwards")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.scratch is None:
        ap.error("--scratch is required")

    sizes = sorted({parse_size(s) for s in args.sizes})
    compare_sizes = sorted({parse_size(s) for s in args.compare})
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "rows": [],
        "skipped": [],
        "compare": [],
    }

    def save() -> None:
        if args.json:
            from matchbench.io import write_json

            write_json(args.json, report)

    for dim in args.dims:
        if not sizes + compare_sizes:
            ap.error("nothing to do: give --sizes or --compare")
        folder = ensure_data(args.scratch, dim, max(sizes + compare_sizes), args.queries)
        base = {"folder": str(folder), "dim": dim, "k": args.k, "queries": args.queries,
                "threads": args.threads}  # fmt: skip
        trained: dict[str, dict[str, Any]] = {}
        last_build: dict[str, tuple[int, float]] = {}
        for n in sizes:
            exact = run_child({**base, "what": "exact", "n": n})
            report["rows"].append({"dim": dim, "n": n, "index": "Flat", **exact})
            print_row(report["rows"][-1])
            save()
            for factory in args.index:
                if factory == "Flat":
                    continue
                row: dict[str, Any] = {"dim": dim, "n": n, "index": factory}
                spec = {**base, "what": "fill", "n": n, "factory": factory}
                if factory.startswith("HNSW"):
                    spec["params"] = [f"efSearch={e or args.k}" for e in args.ef_search]
                    if factory in last_build:
                        n0, t0 = last_build[factory]
                        predicted = t0 * n / n0
                        if predicted > args.max_build_s:
                            report["skipped"].append({**row, "why": (
                                f"build predicted {predicted:.0f} s from {t0:.0f} s at "
                                f"{human(n0)} (limit {args.max_build_s:.0f} s)")})  # fmt: skip
                            save()
                            continue
                    links = int(re.match(r"HNSW(\d*)", factory).group(1) or 32)
                    need = n * (4 * dim + 2 * links * 4 * 1.1)  # float32 rows + level-0 links
                    if need > 0.7 * mem_available():
                        report["skipped"].append({**row, "why": f"needs ~{need / 2**30:.1f} GiB"})
                        continue
                else:
                    spec["params"] = [f"nprobe={p}" for p in args.nprobe]
                    if factory not in trained:
                        path = str(folder / f"trained_{factory.replace(',', '_')}.index")
                        trained[factory] = {
                            "path": path,
                            **run_child(
                                {
                                    **base,
                                    "what": "train",
                                    "n": n,
                                    "factory": factory,
                                    "trained": path,
                                }
                            ),
                        }
                    spec["trained"] = trained[factory]["path"]
                out = run_child(spec)
                train = trained.get(factory, {})
                out["train_s"] = train.get("train_s", 0.0)
                out["train_peak_rss"] = train.get("peak_rss", 0)
                out["build_s"] = out["train_s"] + out["add_s"]
                out["params"] = spec["params"][0]
                last_build[factory] = (n, out["build_s"])
                report["rows"].append({**row, **out})
                print_row(report["rows"][-1])
                save()
        for n in compare_sizes:
            # Here, not in a child: both sides must share one process, its threads and its load.
            limits = set_threads(args.threads)  # noqa: F841
            result = compare(folder, dim, n, args)
            result["load"] = round(os.getloadavg()[0], 2)
            report["compare"].append(result)
            print(
                f"pipeline / bare faiss, d={dim} n={human(n)}: {result['ratio_median']:.2f} "
                f"(repeats {', '.join(f'{r:.2f}' for r in result['ratios'])})",
                flush=True,
            )
            save()
        if not args.keep:
            shutil.rmtree(folder)
    print_tables(report)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def print_row(r: dict[str, Any]) -> None:
    print(
        f"d={r['dim']} n={human(r['n'])} {r['index']}: build {r['build_s']:.0f} s, "
        f"search {r['search_s']:.1f} s, peak RSS {r['peak_rss'] / 2**30:.2f} GiB, "
        f"size {r['size_bytes'] / 2**30:.2f} GiB, recall {r['recall']:.3f}, load {r['load']}",
        flush=True,
    )


def print_tables(report: dict[str, Any]) -> None:
    print("\n| d | N | index | build s (train + add) | peak RSS GiB | index GiB | bytes/vector "
          "| queries/s | recall@k | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        build = (
            f"{r['build_s']:.0f} ({r['train_s']:.0f} + {r['add_s']:.0f})"
            if "add_s" in r
            else "0 (shards)"
        )
        rss = f"{r['peak_rss'] / 2**30:.2f}"
        if r.get("train_peak_rss"):
            rss += f" (train {r['train_peak_rss'] / 2**30:.2f})"
        qps = r["queries"] / r["search_s"]
        print(
            f"| {r['dim']} | {human(r['n'])} | {r['index']} | {build} | {rss} "
            f"| {r['size_bytes'] / 2**30:.2f} | {r['size_bytes'] / r['n']:.0f} | {qps:.1f} "
            f"| {r['recall']:.3f} | {r['load'][0]}-{r['load'][1]} |"
        )
    for r in report["rows"]:
        if len(r.get("sweep", [])) > 1:
            print(f"\nd={r['dim']} N={human(r['n'])} {r['index']}: " + ", ".join(
                f"{w['params']}: {r['queries'] / w['search_s']:.0f} q/s, recall {w['recall']:.3f}"
                for w in r["sweep"]))  # fmt: skip
    for s in report["skipped"]:
        print(f"skipped d={s['dim']} n={human(s['n'])} {s['index']}: {s['why']}")
    for c in report["compare"]:
        print(
            f"\npipeline exact_search vs bare faiss IndexFlatIP, d={c['dim']} N={human(c['n'])}, "
            f"{c['threads']} threads: pipeline {statistics.median(c['pipeline_s']):.1f} s, "
            f"bare {statistics.median(c['bare_s']):.1f} s (medians), paired median ratio "
            f"{c['ratio_median']:.2f} [{min(c['ratios']):.2f}-{max(c['ratios']):.2f}]; "
            f"same indices {c['same_index_fraction']:.4f}, max score diff {c['max_score_diff']:.1e}"
        )


if __name__ == "__main__":
    main()
