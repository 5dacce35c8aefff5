# Track cir: zero-shot composed image retrieval (matchbench.tracks.cir). Every method on every
# frozen model is evaluated on every dataset as the model <frozen>@<method>; the gallery and
# reference features come from the shared feature store (extract once, every method reads
# them). The trained methods' parts train on the frozen model: cir-pic2word, cir-lincir and
# cir-stage1 on `train_dataset`, cir-stage2 (starting from cir-stage1) on `triplets`.
from matchbench.tracks.cir.methods import RECIPES, STAGE1, TRAINED_ON, method_checkpoint, split_method

CIR = CFG["tracks"]["cir"]
CIR_DATASETS = datasets_of("cir")


def cir_tables(dataset):
    return [L.index(dataset), L.table(dataset, "cir_queries"), L.table(dataset, "cir_gallery")]


rule prepare_cir:
    # Composed-retrieval datasets: the image index, the queries and the galleries (docs/contracts.md).
    input:
        rules.download.output,
    output:
        index=L.index("{dataset}"),
        queries=L.table("{dataset}", "cir_queries"),
        gallery=L.table("{dataset}", "cir_gallery"),
    wildcard_constraints:
        dataset=one_of(CIR_DATASETS),
    params:
        reads=reads("prepare", dataset="{dataset}"),
    priority: FIRST
    log:
        L.log("prepare", "{dataset}"),
    benchmark:
        L.benchmark("prepare", "{dataset}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench prepare --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


def cir_training_inputs(w):
    """What a recipe reads: the training dataset's features and tables, and stage 1 for stage 2."""
    files = [L.features(w.dataset, w.backbone, "features.npy"), L.index(w.dataset)]
    if TRAINED_ON[w.recipe] == "triplets":
        files += [L.table(w.dataset, "cir_queries"), L.model(STAGE1, CIR["train_dataset"], w.backbone, "model.safetensors")]
    else:
        files.append(L.table(w.dataset, "captions"))
    return files


rule finetune_cir:
    input:
        cir_training_inputs,
    output:
        model=L.model("{recipe}", "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model("{recipe}", "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model("{recipe}", "{dataset}", "{backbone}", "config.json"),
    wildcard_constraints:
        recipe=one_of(RECIPES),
    params:
        reads=reads("finetune", recipe="{recipe}", dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG
    resources:
        gpu=GPU,
    log:
        L.log("finetune", "{recipe}", "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", "{recipe}", "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe {wildcards.recipe:q} "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


def cir_evaluation_inputs(w):
    frozen, method = split_method(w.model)
    files = [*cir_tables(w.dataset), L.features(w.dataset, frozen, "features.npy")]
    ckpt = method_checkpoint(CFG, frozen, method)
    return files + ([ckpt] if ckpt else [])


rule evaluate_cir:
    input:
        cir_evaluation_inputs,
    output:
        metrics=L.metrics("cir", "{dataset}", "{model}"),
        per_query=L.metrics("cir", "{dataset}", "{model}", "per_query.parquet"),
        summary=L.summary("cir", "{dataset}", "{model}"),
        submission=directory(L.metrics("cir", "{dataset}", "{model}", "submission")),
    wildcard_constraints:
        dataset=one_of(CIR["datasets"]),
        model=".+@.+",
    params:
        reads=reads("evaluate", task="cir", dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("evaluate", "cir", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("evaluate", "cir", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {CONFIG_FILE:q} --task cir --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
