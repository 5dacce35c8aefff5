# Input functions and the parameters that decide when a job reruns (rerun-trigger `params`):
# each rule's params hold exactly the config sections its stage reads.
import json

from matchbench.config import split_model


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


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


def report_inputs(wildcards):
    files = {"metrics": [], "stats": [], "logs": [], "pairs": [], "index": []}
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
    return files
