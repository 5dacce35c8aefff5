# Track retrieval: instance-level retrieval at scale (matchbench.tracks.retrieval). The
# distractors are a scatter: each shard is downloaded (or generated) and extracted by a job of
# its own, so a cluster runs them in parallel and adding shards reruns only the new shards'
# jobs and the searches that gather them. Method <m> on model <x> is searched and evaluated
# as the model <x>@<m>; the linear methods read the adaptation trained on adaptation.dataset,
# the local methods the images of the shortlists (index and shards) for their dense features.
# One namespace for every rules file: the track's names stay behind its module's.
import matchbench.tracks.retrieval.methods as ret_methods

RET = CFG["tracks"]["retrieval"]
RET_DATASETS = datasets_of("retrieval")
RET_SHARDS = ret_methods.shard_names(CFG, RET["dataset"])
RET_LINEAR = ret_methods.LINEAR
RET_EMBED = ret_methods.EMBED


rule prepare_retrieval:
    # ILIAS datasets: the image index (query crops, positives) and the task tables.
    input:
        rules.download.output,
    output:
        index=L.index("{dataset}"),
        queries=L.table("{dataset}", "retrieval_queries"),
        positives=L.table("{dataset}", "retrieval_positives"),
    wildcard_constraints:
        dataset=one_of([d for d in RET_DATASETS if has_tables(d)]),
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


rule download_shard:
    # One distractor shard (ILIAS: a YFCC100M tar of 100K images, checked against
    # checksums.txt; the mini-world: generated from the seed and the shard's number alone).
    input:
        rules.download.output,
    output:
        L.shard("{dataset}", "{shard}"),
    wildcard_constraints:
        dataset=one_of(RET_DATASETS),
        shard=one_of(RET_SHARDS),
    params:
        reads=reads("download", dataset="{dataset}"),
    log:
        L.log("download", "{dataset}", "{shard}"),
    benchmark:
        L.benchmark("download", "{dataset}", "{shard}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench download --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} "
        "--shard {wildcards.shard:q} 2> {log:q}"


rule extract_shard:
    input:
        shard=L.shard("{dataset}", "{shard}"),
        weights=weights_input,
    output:
        features=L.distractors("{dataset}", "{model}", "{shard}", "features.npy"),
        ids=L.distractors("{dataset}", "{model}", "{shard}", "ids.txt"),
        meta=L.distractors("{dataset}", "{model}", "{shard}", "meta.json"),
    wildcard_constraints:
        dataset=one_of(RET_DATASETS),
        shard=one_of(RET_SHARDS),
    params:
        reads=reads("extract", dataset="{dataset}", model="{model}", shard="{shard}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("extract", "{dataset}", "{model}", "{shard}"),
    benchmark:
        L.benchmark("extract", "{dataset}", "{model}", "{shard}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench extract --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} --shard {wildcards.shard:q} 2> {log:q}"


rule finetune_retrieval:
    # ILIAS's linear adaptation, on the stored descriptors of the training set.
    input:
        features=L.features("{dataset}", "{backbone}", "features.npy"),
        index=L.index("{dataset}"),
    output:
        model=L.model(RET_LINEAR, "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model(RET_LINEAR, "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model(RET_LINEAR, "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe=RET_LINEAR, dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    log:
        L.log("finetune", RET_LINEAR, "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", RET_LINEAR, "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe {RET_LINEAR} "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


rule finetune_retrieval_embed:
    # A backbone fine-tuned as an instance embedding on the training set's images
    # (the model <backbone>+ilias-embed).
    input:
        index=L.index("{dataset}"),
        weights=backbone_weights,
    output:
        model=L.model(RET_EMBED, "{dataset}", "{backbone}", "model.safetensors"),
        log=L.model(RET_EMBED, "{dataset}", "{backbone}", "train_log.csv"),
        config=L.model(RET_EMBED, "{dataset}", "{backbone}", "config.json"),
    params:
        reads=reads("finetune", recipe=RET_EMBED, dataset="{dataset}", backbone="{backbone}"),
    threads: THREADS
    priority: LONG
    resources:
        gpu=GPU,
    log:
        L.log("finetune", RET_EMBED, "{dataset}", "{backbone}"),
    benchmark:
        L.benchmark("finetune", RET_EMBED, "{dataset}", "{backbone}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench finetune --config {CONFIG_FILE:q} --recipe {RET_EMBED} "
        "--dataset {wildcards.dataset:q} --backbone {wildcards.backbone:q} 2> {log:q}"


def retrieval_inputs(w):
    model, method = ret_methods.split_method(w.model)
    files = [
        L.table(w.dataset, "retrieval_queries"),
        L.table(w.dataset, "retrieval_positives"),
        L.features(w.dataset, model, "features.npy"),
        *(L.distractors(w.dataset, model, s, "features.npy") for s in RET_SHARDS),
    ]
    ckpt = ret_methods.method_checkpoint(CFG, model, method)
    files += [ckpt] if ckpt else []
    if method in ret_methods.LOCAL:  # the images themselves: the re-ranking's dense features
        files += [L.index(w.dataset), *(L.shard(w.dataset, s) for s in RET_SHARDS)]
    weights = L.model_weights(CFG, model, w.dataset)  # the text tower of text queries
    return files + ([weights] if weights else [])


rule retrieve:
    input:
        retrieval_inputs,
    output:
        ranks=L.ranked("{dataset}", "{model}", "ranks.parquet"),
        predictions=L.ranked("{dataset}", "{model}", "predictions.json"),
        search=L.ranked("{dataset}", "{model}", "search.json"),
    wildcard_constraints:
        dataset=one_of(RET_DATASETS),
        model=".+@.+",
    params:
        reads=reads("retrieve", task="retrieval", dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("retrieve", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("retrieve", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench retrieve --config {CONFIG_FILE:q} --task retrieval --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"


rule evaluate_retrieval:
    input:
        rules.retrieve.output,
        L.table("{dataset}", "retrieval_queries"),
        L.table("{dataset}", "retrieval_positives"),
    output:
        metrics=L.metrics("retrieval", "{dataset}", "{model}"),
        per_query=L.metrics("retrieval", "{dataset}", "{model}", "per_query.parquet"),
        summary=L.summary("retrieval", "{dataset}", "{model}"),
    wildcard_constraints:
        dataset=one_of(RET_DATASETS),
        model=".+@.+",
    params:
        reads=reads("evaluate", task="retrieval", dataset="{dataset}", model="{model}"),
    log:
        L.log("evaluate", "retrieval", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("evaluate", "retrieval", "{dataset}", "{model}"),
    conda:
        "../../../envs/matchbench.yaml"
    shell:
        "matchbench evaluate --config {CONFIG_FILE:q} --task retrieval --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
