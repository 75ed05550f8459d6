"""Layers import only downward: ground (clouds config, labels, layout, errors) < artifacts < models < stages <
pipelines < the CLI and server. Every import counts, also those inside functions (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = {"clouds.cli", "clouds.server"}  # the app: the only modules of `clouds` above the ground
LAYERS = {"ground": 0, "artifacts": 1, "models": 2, "stages": 3, "pipelines": 4, "app": 5}


def layer_of(module: str) -> str | None:
    if module in TOP or any(module.startswith(m + ".") for m in TOP):
        return "app"
    top = module.split(".")[0]
    if top == "clouds":
        return "ground"
    return top if top in LAYERS else None


def modules() -> list[tuple[str, Path]]:
    out = []
    for package in ("clouds", "artifacts", "models", "stages", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out.append((name, path))
    return out


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_every_import_points_down_or_sideways():
    upward = []
    for name, path in modules():
        own = LAYERS[layer_of(name)]
        for line, target in imports(path):
            layer = layer_of(target)
            if layer is not None and LAYERS[layer] > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({layer_of(name)}) imports {target} ({layer})")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize(("module", "layer"), [
    ("clouds.layout", "ground"), ("clouds.config.root", "ground"), ("clouds.cli", "app"), ("artifacts.identity", "artifacts"),
    ("stages.table", "stages"), ("pipelines.stage_flows", "pipelines"), ("numpy", None),
])
def test_the_layer_rule_itself(module, layer):
    assert layer_of(module) == layer


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pipelines.tasks import run_local\n")
    assert imports(bad) == [(2, "pipelines.tasks")]


def test_what_a_user_can_fix_is_a_clouds_error_and_what_is_a_bug_is_not(tmp_path):
    """The CLI prints a CloudsError as one `error:` line and lets anything else (a bug) keep its traceback, so
    the errors users cause in lower layers must be CloudsErrors, still ValueErrors for older callers."""
    import numpy as np

    from clouds.config import BackboneConfig
    from clouds.config.base import check_safe_name
    from clouds.errors import CloudsError
    from clouds.labels import check_train_ids
    from models.backbone import create_clip
    from models.sam import load_sam
    from stages.predict.inference import InferenceSettings

    bad_file = tmp_path / "sam.pt"
    bad_file.write_bytes(b"not a checkpoint")
    user_errors = [
        lambda: check_train_ids(np.array([[3, 40]], np.uint8), "sample 7"),
        lambda: check_safe_name("../up", "--run"),
        lambda: create_clip(BackboneConfig(name="no-such-model", pretrained=None)),
        lambda: load_sam("tiny", bad_file),
        lambda: InferenceSettings(mode="tiles"),
    ]
    for cause in user_errors:
        with pytest.raises(CloudsError) as err:
            cause()
        assert isinstance(err.value, ValueError)
    from stages.evaluate.metrics import confusion_matrix

    with pytest.raises(ValueError) as bug:  # a broken invariant inside the code: the traceback is wanted
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((3, 3), np.uint8))
    assert not isinstance(bug.value, CloudsError)


def test_the_refine_stage_does_not_import_the_segmenter_libraries():
    """Refine workers score with the metrics alone; open_clip and transformers cost ~3 s per process."""
    import subprocess
    import sys

    code = "import sys, stages.refine.stage; print(sorted({'open_clip', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
