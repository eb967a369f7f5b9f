# Datasets: download or take a local copy, verify its checksum, convert (eps-resnet prepare).


rule prepare_dataset:
    output:
        os.path.join(DATA, "{dataset}", "prepared.yaml"),
    log:
        os.path.join(LOGS, "prepare", "{dataset}.log"),
    threads: 1
    resources:
        runtime=config["resources"]["other"]["runtime"],
        mem_mb=config["resources"]["other"]["mem_mb"],
    params:
        out=prepared_dir,
        flags=prepare_flags,
    shell:
        "eps-resnet prepare {wildcards.dataset} --out {params.out:q} {params.flags} > {log:q} 2>&1"
