"""Both pretraining stages share one loop: cut at a step, resumed, they end on the weights of an uncut run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from artifacts import is_committed
from clouds.config import load_config
from stages.pretrain import sam_stage
from stages.pretrain import stage as tower_stage
from tests.test_pretrain import SMALL as TOWER_SMALL
from tests.test_pretrain_sam import SMALL as SAM_SMALL

TINY = "configs/tiny.yaml"
STAGES = {
    "tower": (tower_stage.pretrain, tower_stage.Pretrainer, TOWER_SMALL, "image_tower.safetensors"),
    "sam": (sam_stage.pretrain_sam, sam_stage.SamPretrainer, SAM_SMALL, sam_stage.SAM_FILE),
}


@pytest.mark.parametrize("which", sorted(STAGES))
def test_an_interrupted_pretraining_resumes_to_the_same_weights(which, tmp_path, monkeypatch):
    run, trainer, overrides, weights = STAGES[which]
    cfg = load_config(TINY, overrides)
    run(cfg, str(tmp_path / "whole"), {})
    real_step = trainer.train_step

    def dies_at_step_3(self, *args):
        if self.step == 2:
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(trainer, "train_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, str(tmp_path / "cut"), {})
    assert (tmp_path / "cut" / "_progress" / "state.pt").exists() and not is_committed(str(tmp_path / "cut"))
    monkeypatch.setattr(trainer, "train_step", real_step)
    run(cfg, str(tmp_path / "cut"), {})
    whole = load_file(str(tmp_path / "whole" / weights))
    cut = load_file(str(tmp_path / "cut" / weights))
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
