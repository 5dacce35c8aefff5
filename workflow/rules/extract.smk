rule extract:
    input:
        index=L.index("{dataset}"),
        weights=weights_input,
    output:
        features=L.features("{dataset}", "{model}", "features.npy"),
        ids=L.features("{dataset}", "{model}", "ids.txt"),
        meta=L.features("{dataset}", "{model}", "meta.json"),
    wildcard_constraints:
        # one folder level each: a distractor shard's store (extract_shard) lies deeper
        dataset="[^/]+",
        model="[^/]+",
    params:
        reads=reads("extract", dataset="{dataset}", model="{model}"),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        L.log("extract", "{dataset}", "{model}"),
    benchmark:
        L.benchmark("extract", "{dataset}", "{model}"),
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench extract --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} "
        "--model {wildcards.model:q} 2> {log:q}"
