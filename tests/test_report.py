"""The run report: numbers in the table come from the rounds given, figures are real PNGs."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from artifacts import Folder, read_lineage
from stages.report import RoundResult, observations, write_report
from stages.report.figures import gallery, miou_per_round, pseudo_quality

ROUNDS = [
    RoundResult(0, {"val-sim": 0.40, "target-fog": 0.10, "target-night": 0.04}),
    RoundResult(1, {"val-sim": 0.41, "target-fog": 0.16, "target-night": 0.08}, 0.20, 0.25, {"refine": "memory://r1"}),
]


def test_report_page_and_files():
    samples = [{"image": np.zeros((8, 16, 3), np.uint8), "seg.png": np.ones((8, 16), np.uint8),
                "teacher.seg.png": np.zeros((8, 16), np.uint8), "caption": "A photo of a street"}]
    page = write_report("memory://rep", "run x", ROUNDS, samples, notes=observations(ROUNDS), inputs=[])
    html = Folder.at("memory://rep").read_bytes("index.html").decode()
    assert page.endswith("index.html")
    assert "val-sim (in-domain)" in html and "mean of targets" in html
    assert "<b>7.0</b>" in html and "<b>12.0</b> <small>(+5.0)</small>" in html  # (10+4)/2 and (16+8)/2
    assert "Mean target mIoU improved: 7.0 (source only) -&gt; 12.0" in html
    assert "20.0 mIoU" in html and "25.0 after refinement" in html
    assert html.count("data:image/png;base64,") == 3
    assert set(read_lineage("memory://rep")["files"]) == {"index.html", "miou.png", "pseudo_quality.png", "gallery.png"}


def test_figures_are_pngs():
    for png in (miou_per_round(ROUNDS), pseudo_quality(ROUNDS),
                gallery([{"image": np.zeros((8, 16, 3), np.uint8), "seg.png": np.zeros((8, 16), np.uint8)}])):
        assert Image.open(io.BytesIO(png)).format == "PNG"


def test_flat_result_is_stated():
    flat = [RoundResult(0, {"target-fog": 0.10}), RoundResult(1, {"target-fog": 0.102}, 0.1, 0.1)]
    assert observations(flat)[0].startswith("Mean target mIoU did not clearly improve")
