# Compression of each ε-ResNet run, and validation of the full and compressed networks: on GPUs
# of their own (resources.evaluate.gpus, 0 by default) through `eps-resnet gpu-run`, like training.


rule compress:
    input:
        in_run(DONE_FILE),
    output:
        in_run(COMPRESSED_DIR, COMPRESSED_FILE),
    log:
        os.path.join(LOGS, "compress", "{experiment}", "{run}.log"),
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpus"],
        runtime=config["resources"]["evaluate"]["runtime"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
    params:
        run=run_dir,
        out=compressed_dir,
    shell:
        "eps-resnet gpu-run --gpus {resources.gpu} -- eps-resnet compress {params.run:q} --out {params.out:q} > {log:q} 2>&1"


rule evaluate_compressed:
    input:
        in_run(COMPRESSED_DIR, COMPRESSED_FILE),
    output:
        in_run(COMPRESSED_DIR, EVAL_FILE),
    log:
        os.path.join(LOGS, "evaluate", "{experiment}", "{run}-compressed.log"),
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpus"],
        runtime=config["resources"]["evaluate"]["runtime"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
    params:
        model=compressed_dir,
    shell:
        "eps-resnet gpu-run --gpus {resources.gpu} -- eps-resnet evaluate {params.model:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_full:
    input:
        in_run(DONE_FILE),
    output:
        in_run(EVAL_FILE),
    log:
        os.path.join(LOGS, "evaluate", "{experiment}", "{run}-full.log"),
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        gpu=config["resources"]["evaluate"]["gpus"],
        runtime=config["resources"]["evaluate"]["runtime"],
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
    params:
        model=run_dir,
    shell:
        "eps-resnet gpu-run --gpus {resources.gpu} -- eps-resnet evaluate {params.model:q} --out {output:q} > {log:q} 2>&1"
