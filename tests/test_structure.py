"""One run record, one recipe table, one source for every list: checked in-process (no
Snakemake, no TensorFlow), so that the config, the command line, the schema and the README
cannot drift from the package."""
import dataclasses
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import yaml

from eps_resnet.cli import train_settings
from eps_resnet.data import DATASETS, preparable
from eps_resnet.models import FAMILIES, VARIANTS
from eps_resnet.models.gate import GATES
from eps_resnet.models.resnet import build_model
from eps_resnet.training.recipe import LR_MODES, RECIPES, markdown_table
from eps_resnet.training.settings import PRECISIONS, SettingsError, TrainSettings, default_of
from eps_resnet.workflow.config import RunTable, WorkflowConfigError
from helpers import ROOT, load


def schema():
    with open(os.path.join(ROOT, "workflow", "schemas", "config.schema.yaml")) as f:
        return yaml.safe_load(f)


# -- one run record from config to training ----------------------------------------------------
@pytest.mark.parametrize("config", ["experiments.yaml", "demo.yaml"])
def test_every_run_round_trips_through_the_train_command_line(config):
    table = RunTable(load(config))
    runs = [r for runs in table.runs.values() for r in runs]
    assert runs
    for run in runs:
        argv = shlex.split(run.train_args()) + ["--threads", "3"]
        parsed = train_settings(argv)
        assert parsed == dataclasses.replace(run.settings, threads=3), run.name
        assert parsed.resolved() == dataclasses.replace(run.settings, threads=3).resolved()


def test_run_table_of_the_paper_config():
    table = RunTable(load("experiments.yaml"))
    names = {e: [r.name for r in runs] for e, runs in table.runs.items()}
    assert names == {
        "cifar10": ["cifar10-d110-standard", "cifar10-d110-side", "cifar10-d110-epsilon-e2.5"],
        "cifar100": ["cifar100-d110-standard", "cifar100-d110-epsilon-e2.5"],
        "svhn": ["svhn-d110-standard", "svhn-d110-epsilon-e1.5"],
        "imagenet": ["imagenet-d101-standard", "imagenet-d101-epsilon-e2", "imagenet-d101-epsilon-e2.1"],
        # the rest of the paper's grid
        "cifar10_depth": [f"cifar10-d{d}-{v}" for d in (200, 500, 752) for v in ("standard", "epsilon-e2.5")],
        "cifar100_depth": [f"cifar100-d{d}-{v}" for d in (200, 500, 752) for v in ("standard", "epsilon-e2.5")],
        "svhn_depth": [f"svhn-d{d}-{v}" for d in (200, 302) for v in ("standard", "epsilon-e1.5")],
        "cifar10_epsilon": ["cifar10-d110-epsilon-e2.3", "cifar10-d110-epsilon-e2.7"],
        "imagenet152": ["imagenet-d152-epsilon-e1.8"],
    }
    assert table.groups() == {"main": ["cifar10", "cifar100", "svhn", "imagenet"],
                              "depth": ["cifar10_depth", "cifar100_depth", "svhn_depth"],
                              "epsilon": ["cifar10_epsilon"], "imagenet152": ["imagenet152"]}
    eps = table.get("cifar10", "cifar10-d110-epsilon-e2.5")
    s = eps.settings.resolved()
    assert (s.epsilon, s.epochs, s.lr_schedule, s.batch, s.epsilon_start_epoch) == (2.5, 1000, "adaptive", 128, 0)
    assert s.out == os.path.abspath("results/runs/cifar10/cifar10-d110-epsilon-e2.5")
    assert s.data_dir == os.path.abspath("data/cifar10")
    std = table.get("cifar10", "cifar10-d110-standard").settings.resolved()
    assert (std.epsilon, std.epochs, std.lr_schedule) == (None, 300, "standard")
    imagenet = table.get("imagenet", "imagenet-d101-epsilon-e2.1")
    assert imagenet.gpus == 4 and imagenet.settings.gpus is None  # trains on the GPUs it is given
    assert imagenet.settings.resolved().recipe is RECIPES["imagenet"]
    assert table.available_experiments("main") == ["cifar10", "cifar100", "svhn"]  # no ImageNet path
    assert imagenet.settings.resolved().steps_per_epoch == 5000  # the original's ImageNet epoch


def test_adding_an_epsilon_adds_one_run_in_process():
    config = load("experiments.yaml")
    before = RunTable(config).experiment("cifar10")
    config["experiments"]["cifar10"]["epsilons"].append(2.7)
    after = RunTable(config).experiment("cifar10")
    assert [r.name for r in after] == [r.name for r in before] + ["cifar10-d110-epsilon-e2.7"]
    assert after[:-1] == before


@pytest.mark.parametrize("edit,message", [
    (lambda e: e.update(depths=[100]), "experiments.cifar10.depths: --depth 100 is not a CIFAR-family depth"),
    (lambda e: e.update(family="imagenet"),
     "experiments.cifar10.family: --family imagenet does not train on cifar10"),
    (lambda e: e.update(lr_schedule="adaptive", dataset="imagenet", depths=[50]),
     "experiments.cifar10.lr_schedule: --lr-schedule adaptive does not exist for imagenet"),
    (lambda e: e.update(epsilons=[float("nan")]), "experiments.cifar10.epsilons: --epsilon nan is not a finite"),
    (lambda e: e.update(variants=["standard", "standard"]), "experiments.cifar10: runs listed twice"),
])
def test_a_config_that_cannot_train_names_its_key(edit, message):
    config = load("experiments.yaml")
    edit(config["experiments"]["cifar10"])
    with pytest.raises(WorkflowConfigError, match=re.escape(message)):
        RunTable(config)


# -- every list and default defined once ---------------------------------------------------------
def test_the_schema_takes_its_lists_and_defaults_from_the_package():
    s = schema()
    exp = s["properties"]["experiments"]["patternProperties"]["^[A-Za-z0-9_]+$"]["properties"]
    assert tuple(exp["dataset"]["enum"]) == preparable()
    pattern = next(iter(s["properties"]["datasets"]["patternProperties"]))
    assert pattern == f"^({'|'.join(preparable())})$"
    assert tuple(exp["family"]["enum"]) == FAMILIES
    assert tuple(exp["variants"]["items"]["enum"]) == tuple(v for v in VARIANTS if v != "epsilon")
    assert tuple(exp["lr_schedule"]["enum"]) == LR_MODES
    assert tuple(exp["gate"]["enum"]) == tuple(GATES)
    assert tuple(exp["precision"]["enum"]) == PRECISIONS
    assert exp["seeds"]["default"] == [default_of("seed")]
    assert exp["precision"]["default"] == default_of("precision")
    # defaults that depend on the dataset live in the recipe, not in the schema
    for key in ("epsilon_start_epoch", "lr_schedule", "batch", "steps_per_epoch"):
        assert "default" not in exp[key], key


def test_every_dataset_family_has_a_recipe():
    for info in DATASETS.values():
        assert set(info.families) <= set(FAMILIES)
        for family, recipe in info.recipes.items():
            assert RECIPES[recipe].name == recipe
            s = TrainSettings(dataset=info.name, depth=8 if family == "cifar" else 18,
                              variant="epsilon", epsilon=1.0, family=family, out="x").resolved()
            r = s.recipe
            assert (s.batch, s.epochs, s.epsilon_start_epoch) == (r.batch, r.epochs_epsilon,
                                                                  r.epsilon_start_epoch)
            assert s.lr_schedule == ("adaptive" if r.adaptive_decays else "standard")
    with pytest.raises(SettingsError, match="--family imagenet does not train on svhn"):
        TrainSettings(dataset="svhn", depth=18, variant="standard", family="imagenet", out="x").resolved()


def test_the_model_takes_the_recipe(tf, tmp_path):
    import numpy as np

    # CIFAR batches arrive as uint8 and the network subtracts the training mean it reads
    mean = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) / 100
    np.save(tmp_path / "mean.npy", mean)
    for dataset, family, depth in (("cifar10", "cifar", 8), ("imagenet", "imagenet", 18)):
        s = TrainSettings(dataset=dataset, depth=depth, variant="epsilon", epsilon=2.0,
                          out="x", data_dir=str(tmp_path)).resolved()
        model = build_model(s)
        spec = model.spec
        assert spec.recipe is RECIPES[family] and spec.layout.family == family
        assert spec.epsilon == 2.0 and spec.num_classes == s.classes
        assert model.takes_uint8
        if family == "cifar":
            np.testing.assert_array_equal(spec.pixel_mean, mean)
        else:
            assert spec.pixel_mean is None  # ImageNet's uint8 is normalised by channel


def test_readme_recipe_table_is_the_package_table():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert markdown_table() in readme


# -- one room per concern ---------------------------------------------------------------------
def test_results_settings_and_workflow_modules_do_not_start_tensorflow():
    modules = ["results.parse", "results.summary", "results.plots", "results.estimate",
               "training.settings", "training.runfolder", "training.runlog", "training.recipe",
               "workflow.config", "models.gate", "cli"]
    code = (f"import sys; import {', '.join('eps_resnet.' + m for m in modules)}; "
            "print('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"


#: The pipeline's stages, each a subpackage that imports only those before it (the base modules
#: compat, errors, atomic and the paper's reference data come first).
STAGES = ["base", "data", "models", "training", "runs", "results", "workflow", "cli"]


def _package_imports():
    """{module: [(imported module, line)]} of every relative import in eps_resnet, at any depth
    (function-level imports included), except those under ``if TYPE_CHECKING:``."""
    import ast

    package = os.path.join(ROOT, "eps_resnet")
    found = {}
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
            if name == "__init__.py":
                module = parent = module[:-len(".__init__")]
            else:
                parent = module.rsplit(".", 1)[0]
            tree = ast.parse(open(path).read())
            hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                      and getattr(node.test, "id", None) == "TYPE_CHECKING"
                      for n in ast.walk(node)}
            edges = []
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level and id(node) not in hidden:
                    base = parent.split(".")[:len(parent.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    edges += [(target if node.module else f"{target}.{a.name}", node.lineno)
                              for a in node.names]
            found[module] = edges
    return found


def _stage(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else "base"
    return part if part in STAGES else "base"


def test_imports_run_down_the_stages_without_circles():
    imports = _package_imports()
    upward = [f"{m} imports {t} (line {n})" for m, edges in imports.items() for t, n in edges
              if STAGES.index(_stage(t)) > STAGES.index(_stage(m))]
    assert not upward, upward
    # module-level circles: a module reaching itself through the modules it imports
    graph = {m: {t if t in imports else t.rsplit(".", 1)[0] for t, _ in edges} & set(imports) - {m}
             for m, edges in imports.items()}
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            assert m != start, f"{start} reaches itself through its imports ({sorted(seen)})"
            if m not in seen:
                seen.add(m)
                todo += graph[m]
    assert set(_stage(m) for m in imports) == set(STAGES)


def test_every_stage_says_what_it_holds_and_may_import():
    for stage in STAGES[1:]:
        doc = __import__(f"eps_resnet.{stage}", fromlist=["_"]).__doc__ or ""
        assert "import" in doc, f"eps_resnet/{stage}/__init__.py does not say what it may import"


def test_cifar_baselines_warm_up_for_one_epoch_as_the_original_baselines():
    from eps_resnet.training.schedules import AdaptiveRestart, replay

    cifar = RECIPES["cifar"]
    assert replay(AdaptiveRestart(cifar.lr_points("standard", "standard")), [], 3) == [0.01, 0.1, 0.1]
    assert replay(AdaptiveRestart(cifar.lr_points("standard", "side")), [], 84)[81:83] == [0.1, 0.01]
    assert replay(AdaptiveRestart(cifar.lr_points("standard", "epsilon")), [], 2) == [0.1, 0.1]
    s = TrainSettings(dataset="cifar10", depth=110, variant="standard", out="x").resolved()
    assert s.epochs == 300  # 117k steps of 390 in the seed's figure
    assert RECIPES["digits"].lr_points("standard", "standard")[0] == (0, 0.1)  # the demo: none


# The original implementation's values (github.com/yuxwind/epsilon-resnet, scripts/*EpsilonResnet.py,
# and tensorpack's examples its baselines came from), written out here independently of recipe.py.
ORIGINAL = {
    "cifar": dict(batch=128, initial_lr=0.1, baseline_warmup=0.01, epochs_baseline=300,
                  epochs_epsilon=1000, lr_decays=((82, 0.01), (123, 0.001), (300, 0.0002)),
                  adaptive_decays=((41, 0.01), (61, 0.001), (150, 0.0002)), weight_decay=2e-4,
                  weight_decay_decay=(480_000, 0.2), nesterov=False, momentum=0.9,
                  side_loss_weight=0.1, augmentation="cifar"),
    "svhn": dict(batch=128, initial_lr=0.1, baseline_warmup=None, epochs_baseline=200,
                 epochs_epsilon=200, lr_decays=((20, 0.01), (28, 0.001), (50, 0.0001)),
                 adaptive_decays=((10, 0.01), (14, 0.001), (25, 0.0001)), weight_decay=2e-4,
                 weight_decay_decay=(480_000, 0.2), nesterov=False, momentum=0.9,
                 side_loss_weight=0.1, augmentation="svhn", epsilon=1.5),
    "imagenet": dict(batch=256, initial_lr=0.1, baseline_warmup=None, epochs_baseline=110,
                     epochs_epsilon=110, lr_decays=((30, 1e-2), (60, 1e-3), (85, 1e-4), (95, 1e-5)),
                     adaptive_decays=None, weight_decay=1e-4, weight_decay_decay=None,
                     nesterov=True, momentum=0.9, side_loss_weight=0.1, augmentation="imagenet",
                     input_format="rgb8"),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_each_recipe_value_is_the_originals(name):
    recipe = dataclasses.asdict(RECIPES[name])
    for key, value in ORIGINAL[name].items():
        assert recipe[key] == value, f"{name}.{key}"


def test_weight_decay_decays_every_480k_steps_in_the_graph(tf):
    from tensorpack.tfutils.common import get_global_step_var

    s = TrainSettings(dataset="svhn", depth=8, variant="standard", out="x").resolved()
    model = build_model(s)
    from tensorpack.tfutils.tower import TowerContext

    with tf.Graph().as_default():
        step = get_global_step_var()
        image, label = (tf.placeholder(t.dtype, t.shape) for t in model.inputs())
        with TowerContext("", is_training=True):
            model.build_graph(image, label)
        wd = tf.get_default_graph().get_tensor_by_name("weight_decay:0")
        with tf.Session() as sess:
            values = []
            for at in (0, 479_999, 480_000, 960_000):
                sess.run(step.assign(at))
                values.append(sess.run(wd))
    np.testing.assert_allclose(values, [2e-4, 2e-4, 4e-5, 8e-6], rtol=1e-6)


def test_svhn_trains_on_extra_unless_the_config_turns_it_off():
    config = load("experiments.yaml")
    svhn = RunTable(config).experiment("svhn")
    assert all("--svhn-extra" in r.train_args().split() for r in svhn)
    assert RunTable(config).prepare_flags("svhn") == ""
    config["datasets"]["svhn"]["svhn_extra"] = False
    table = RunTable(config)
    assert all("--no-svhn-extra" in r.train_args().split() for r in table.experiment("svhn"))
    assert table.prepare_flags("svhn") == "--no-svhn-extra"
    assert train_settings(["--dataset", "svhn", "--depth", "8", "--variant", "standard",
                           "--out", "x"]).resolved().svhn_extra is True
    with pytest.raises(SettingsError, match="--svhn-extra is only for --dataset svhn, not cifar10"):
        TrainSettings(dataset="cifar10", depth=8, variant="standard", svhn_extra=False,
                      out="x").resolved()


def test_no_function_is_longer_than_a_reader_can_hold():
    import ast
    import pathlib

    root = pathlib.Path(ROOT)
    long = []
    for path in sorted((root / "eps_resnet").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_every_import_of_the_package_is_a_declared_dependency():
    """What eps_resnet/ imports (at the top or inside a function) is the standard library, the
    package itself, or a distribution pyproject.toml declares, not one that merely arrives with
    another."""
    import ast
    import importlib.metadata
    import pathlib
    import tomllib

    project = tomllib.loads((pathlib.Path(ROOT) / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in sorted((pathlib.Path(ROOT) / "eps_resnet").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "eps_resnet":
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not undeclared, undeclared
