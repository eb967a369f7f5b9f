# Compression of each ε-ResNet run, and validation of the full and the compressed network, in one
# job (one TensorFlow start instead of three: start-up was most of each job): on GPUs of their
# own (resources.evaluate.gpus, 0 by default) through `eps-resnet gpu-run`, like training.


rule compress:
    input:
        in_run(DONE_FILE),
    output:
        compressed=in_run(COMPRESSED_DIR, COMPRESSED_FILE),
        compressed_eval=in_run(COMPRESSED_DIR, EVAL_FILE),
        full_eval=in_run(EVAL_FILE),
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
        "eps-resnet gpu-run --gpus {resources.gpu} -- eps-resnet compress {params.run:q} --out {params.out:q} --evaluate > {log:q} 2>&1"
