# Input functions and the parameters that decide when a job reruns (rerun-trigger `params`):
# each rule's params hold exactly the config sections its stage reads.
import json
import re

from matchbench.config import split_model
from matchbench.data import get_family


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def one_of(names):
    """A wildcard constraint matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


# Datasets whose family writes a pair table (correspondence) besides the image index.
PAIR_DATASETS = [d for d, s in CFG["datasets"].items() if getattr(get_family(s["family"]), "pairs", False)]
IMAGE_DATASETS = [d for d in CFG["datasets"] if d not in PAIR_DATASETS]
CORR = CFG["tracks"].get("correspondence")
CORR_ON = bool(CORR and CORR["enabled"])


def weights_input(wildcards):
    """The weights file a model's extraction (or training) reads, if any."""
    backbone, recipe = split_model(wildcards.model)
    if recipe is not None:
        return f"{RESULTS}/models/{recipe}/{wildcards.dataset}/{backbone}/model.safetensors"
    if CFG["backbones"][backbone]["pretrained"] is True:
        return f"{DATA}/weights/{backbone}.safetensors"
    return []


def backbone_weights(wildcards):
    if CFG["backbones"][wildcards.backbone]["pretrained"] is True:
        return f"{DATA}/weights/{wildcards.backbone}.safetensors"
    return []


def ssl_models():
    """Every model the ssl track evaluates: untrained, baseline SSL, SSL + semantic positive pairs."""
    track = CFG["tracks"].get("ssl")
    if not track or not track["enabled"]:
        return []
    return [m for b in track["backbones"] for m in (b, f"{b}+ssl", f"{b}+ssl-spp")]


def sampler_model(backbone):
    """The model whose features mine the positive pairs of ``backbone``'s ssl-spp training."""
    sampler = CFG["tracks"]["ssl"]["sampler"]
    return {"ssl": f"{backbone}+ssl", "backbone": backbone}.get(sampler, sampler)


def correspondence_models():
    """Every model the correspondence track evaluates: each backbone frozen, then fine-tuned."""
    if not CORR_ON:
        return []
    return list(CORR["backbones"]) + [f"{b}+correspondence" for b in CORR["finetune"]]


def dense_spec(model):
    """What a model's dense maps depend on (the params that rerun extraction and evaluation)."""
    return [CFG["backbones"][split_model(model)[0]], CORR["features"], CORR["evaluate"]["split"], CFG["extract"]["precision"], CFG["device"]]


def correspondence_eval_inputs(wildcards):
    files = {
        "index": f"{DATA}/{wildcards.dataset}/images.parquet",
        "pairs": f"{DATA}/{wildcards.dataset}/pairs.parquet",
        "skipped": f"{DATA}/{wildcards.dataset}/skipped.json",
    }
    if CORR["features"]["cache"]:
        files["maps"] = f"{RESULTS}/dense/{wildcards.dataset}/{wildcards.model}/maps.npy"
    else:
        files["weights"] = weights_input(wildcards)
    return files


def report_inputs(wildcards):
    """Every file the report reads, by role (the report rule turns them into arguments)."""
    files = {k: [] for k in ("metrics", "stats", "logs", "pairs", "index", "predictions", "pred_index", "published")}
    track = CFG["tracks"].get("ssl")
    if track and track["enabled"]:
        ds = track["dataset"]
        files["metrics"] += [f"{RESULTS}/metrics/ssl/{ds}/{m}.json" for m in ssl_models()]
        for b in track["backbones"]:
            sampler = sampler_model(b)
            files["stats"].append(f"{RESULTS}/pairs/{ds}/{sampler}/stats.json")
            files["pairs"].append(f"{RESULTS}/pairs/{ds}/{sampler}/pairs.parquet")
            files["logs"] += [f"{RESULTS}/models/{r}/{ds}/{b}/train_log.csv" for r in ("ssl", "ssl-spp")]
        files["index"].append(f"{DATA}/{ds}/images.parquet")
    if CORR_ON:
        # Example transfers: each fine-tuned backbone frozen and fine-tuned on the same pairs
        # (or the first backbone frozen when nothing is fine-tuned).
        shown = [m for b in CORR["finetune"] for m in (b, f"{b}+correspondence")] or CORR["backbones"][:1]
        for ds in CORR["datasets"]:
            metrics = f"{RESULTS}/metrics/correspondence/{ds}"
            files["metrics"] += [f"{metrics}/{m}.json" for m in correspondence_models()]
            files["predictions"] += [f"{metrics}/{m}.predictions.parquet" for m in shown]
            files["pred_index"].append(f"{DATA}/{ds}/images.parquet")
            files["logs"] += [f"{RESULTS}/models/correspondence/{ds}/{b}/train_log.csv" for b in CORR["finetune"]]
    if CFG["report"]["published"]:
        files["published"].append(CFG["report"]["published"])
    return files


def report_args(wildcards, input):
    """The report's options for the inputs of this config (an option whose files are absent is left out)."""
    args = ["--metrics", *input.metrics, "--mining-stats", *input.stats, "--train-logs", *input.logs]
    if input.pairs:
        args += ["--pairs", input.pairs[0], "--index", input.index[0], "--images-root", str(Path(input.index[0]).parent)]
    if input.predictions:
        args += ["--predictions", *input.predictions, "--predictions-index", *input.pred_index]
    if input.published:
        args += ["--published", input.published[0]]
    return args
