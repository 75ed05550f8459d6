"""ONNX export (optional extra `clouds[onnx]`): the traced scoring graph, checked against PyTorch.

The graph is exported with the TorchScript-based exporter at a fixed input size (as for TorchScript, the
padding and mask-upsampling sizes are traced as constants). One operator needs help: transformers' deformable
attention reaches `grid_sampler` with a grid the exporter types as double while the features are float, which
onnxruntime refuses ("no implementation for GridSample"); the grid is cast to float in the graph, which is what
PyTorch computes with anyway. Every export is run by onnxruntime on 3 images and compared with PyTorch; the
largest absolute score difference is returned (and written in the model card).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from clouds.errors import InputError
from models.segmenter import Segmenter

OPSET = 17
TOLERANCE = 1e-3
"""Largest absolute difference of semantic scores (0..num_queries scale) accepted between ONNX and PyTorch."""


def _require() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError("--format onnx needs the onnx and onnxruntime packages: pip install 'clouds[onnx]' "
                         "(or pip install onnx onnxruntime)") from None


def _grid_sampler(g, image, grid, mode, padding_mode, align_corners):  # noqa: ANN001, ANN202 - exporter API
    grid = g.op("Cast", grid, to_i=1)  # 1 = FLOAT
    return g.op("GridSample", image, grid, align_corners_i=int(align_corners),
                mode_s=("bilinear", "nearest", "bicubic")[mode], padding_mode_s=("zeros", "border", "reflection")[padding_mode])


def write_onnx(model: Segmenter, path: Path, size: tuple[int, int], metadata: dict[str, str]) -> float:
    """Export, attach `clouds.json` metadata, check on 3 images; returns the max abs score difference."""
    _require()
    import onnx
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    from stages.export.formats import FORMAT_TAG, ScoresModule

    scorer = ScoresModule(model.eval())
    register_custom_op_symbolic("aten::grid_sampler", parse_args("v", "v", "i", "i", "b")(_grid_sampler), OPSET)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: the fixed-size contract is documented
            torch.onnx.export(scorer, (torch.zeros(1, 3, *size),), str(path), dynamo=False, opset_version=OPSET,
                              input_names=["images"], output_names=["scores"])
    finally:
        unregister_custom_op_symbolic("aten::grid_sampler", OPSET)
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = "clouds.json", json.dumps({**metadata, "format": FORMAT_TAG, "input_size": list(size),
                                                         "model_config": model.cfg.model_dump(mode="json")})
    onnx.save(graph, str(path))
    return check_onnx(path, scorer, size)


def check_onnx(path: Path, scorer: torch.nn.Module, size: tuple[int, int], count: int = 3) -> float:
    """Max abs difference of scores between onnxruntime and PyTorch over `count` seeded random images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for _ in range(count):
        images = torch.randint(0, 256, (1, 3, *size), generator=generator).float()
        with torch.no_grad():
            expected = scorer(images).numpy()
        got = session.run(None, {"images": images.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst
