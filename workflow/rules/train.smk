# Training: one job per run. The checkpoints are not declared outputs (Snakemake deletes declared
# outputs before a rerun); `train.done` marks a finished run, and a rerun of an interrupted job
# (--rerun-incomplete) resumes from the run folder's newest checkpoint.


rule train:
    input:
        prepared,
    output:
        in_run(DONE_FILE),
    log:
        os.path.join(LOGS, "train", "{experiment}", "{run}.log"),
    benchmark:
        os.path.join(RESULTS, "benchmarks", "train", "{experiment}", "{run}.tsv")
    threads: config["resources"]["train"]["threads"]
    resources:
        gpu=train_gpus,
        runtime=config["resources"]["train"]["runtime"],
        mem_mb=config["resources"]["train"]["mem_mb"],
    params:
        args=train_args,
    shell:
        "eps-resnet gpu-run --gpus {resources.gpu} -- "
        "eps-resnet train {params.args} --threads {threads} > {log:q} 2>&1 "
        "&& touch {output:q}"
