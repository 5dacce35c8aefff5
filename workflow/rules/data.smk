rule download:
    output:
        L.manifest("{dataset}"),
    params:
        reads=reads("download", dataset="{dataset}"),
    localrule: True
    priority: FIRST
    log:
        L.log("download", "{dataset}"),
    benchmark:
        L.benchmark("download", "{dataset}"),
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench download --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule prepare:
    input:
        rules.download.output,
    output:
        L.index("{dataset}"),
    wildcard_constraints:
        dataset=one_of(PLAIN_DATASETS),
    params:
        reads=reads("prepare", dataset="{dataset}"),
    priority: FIRST
    log:
        L.log("prepare", "{dataset}"),
    benchmark:
        L.benchmark("prepare", "{dataset}"),
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench prepare --config {CONFIG_FILE:q} --dataset {wildcards.dataset:q} 2> {log:q}"


rule weights:
    # Runs on the submitting host (localrule): compute jobs never need the network.
    output:
        L.weights("{backbone}"),
    params:
        reads=reads("weights", backbone="{backbone}"),
    localrule: True
    log:
        L.log("weights", "{backbone}"),
    benchmark:
        L.benchmark("weights", "{backbone}"),
    conda:
        "../../envs/matchbench.yaml"
    shell:
        "matchbench weights --config {CONFIG_FILE:q} --backbone {wildcards.backbone:q} 2> {log:q}"
