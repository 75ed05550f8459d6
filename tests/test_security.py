"""Security: loading weights never runs pickled code, and artifacts never carry secrets from the environment.

(That the local Prefect server binds 127.0.0.1 only is checked by tests/test_server.py.)
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("artifacts", "clouds", "models", "pipelines", "stages")
SECRET = "sekrit-123-do-not-store"


def _project_sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]


def test_every_torch_load_in_the_project_is_weights_only():
    calls = 0
    for path in _project_sources():
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            if text[line_start:match.start()].lstrip().startswith("#") or "``" in text[line_start:match.start()]:
                continue  # a comment or docstring naming the call
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[match.start():end + 1]
            assert re.search(r"weights_only\s*=\s*True", call), f"{path.relative_to(REPO)}: {call}"
            calls += 1
        assert "pickle.load" not in text, f"{path.relative_to(REPO)} unpickles data"
    assert calls >= 2  # the train state and SAM checkpoints: the check is looking at real code


class _Exploit:
    """Unpickling this would run code (create a file); a weights-only loader must refuse it."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _malicious(target: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(target))}, buf, pickle_protocol=2)
    return buf.getvalue()


def test_malicious_sam_checkpoint_is_refused_without_running_it(tmp_path):
    from models.sam import read_state_dict

    pwned = tmp_path / "pwned"
    ckpt = tmp_path / "sam_vit_h.pth"
    ckpt.write_bytes(_malicious(pwned))
    with pytest.raises(ValueError, match=r"sam_vit_h\.pth cannot be read as a weights-only state dict"):
        read_state_dict(ckpt)
    assert not pwned.exists()


def test_malicious_train_state_is_refused_without_running_it(tmp_path):
    from artifacts import ArtifactError
    from stages.train.checkpoints import TRAIN_STATE, read_train_state

    pwned = tmp_path / "pwned"
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / TRAIN_STATE).write_bytes(_malicious(pwned))
    with pytest.raises(ArtifactError, match="train_state.pt is corrupt or not a train state"):
        read_train_state(str(tmp_path / "ckpt"))
    assert not pwned.exists()
    with pytest.raises(pickle.UnpicklingError):  # what the refusal protects against is real
        torch.load(tmp_path / "ckpt" / TRAIN_STATE, weights_only=True)


def test_model_weights_are_safetensors_not_pickles(tmp_path):
    from models.build import build_segmenter, tiny_model_config
    from models.checkpoint import save_checkpoint

    cfg = tiny_model_config()
    save_checkpoint(str(tmp_path / "ck"), build_segmenter(cfg), None, cfg, {})
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    weights = [n for n in files if n.endswith((".pt", ".pth", ".bin", ".pkl"))]
    assert not weights and any(n.endswith(".safetensors") for n in files), files


def test_artifacts_never_embed_secrets_from_the_environment(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from artifacts import open_artifact
    from clouds.config import load_config
    from clouds.layout import RunLayout
    from pipelines.lock import RunLock
    from stages.ingest.stage import ingest
    from stages.prompts.stage import write_prompts

    for name in ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "OPENAI_API_KEY", "PREFECT_API_KEY"):
        monkeypatch.setenv(name, SECRET)
    cfg = load_config(str(Path(__file__).parent / "micro.yaml"))
    layout = RunLayout(str(tmp_path / "runs"), cfg.run.name)
    with RunLock(layout.base):
        spec = cfg.data.source
        ingest(spec, layout.data(spec.name), cfg.artifacts)
        write_prompts(layout.once("prompts"), cfg.prompts, cfg.run.seed)
        lock_file = next(Path(layout.base).glob("_RUN_LOCK.json")).read_bytes()
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert len(written) >= 6
    for blob in [lock_file, *(p.read_bytes() for p in written)]:
        assert SECRET.encode() not in blob
    # The manifest is zstd-compressed and samples are PNG/JSON inside tars: look at decoded content too.
    for url in (layout.data(spec.name), layout.once("prompts")):
        art = open_artifact(url)
        assert SECRET not in str(pq.read_table(Path(url) / "manifest.parquet").to_pylist())
        assert SECRET not in str(art.lineage)
        for sample in art.iter_samples(members=["json", "txt"]):
            assert SECRET not in str(sample)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET  # the check ran with the secret really set


def test_shard_recipes_sent_to_ray_carry_no_credentials_from_the_executor_config():
    """The recipe is a Prefect flow parameter (stored and shown by the server); the executor section, where
    Ray's runtime_env may hold credentials for the workers, stays out of it."""
    from clouds.config import load_config
    from clouds.layout import RunLayout
    from pipelines.context import RunContext
    from pipelines.jobs import JobRecipe

    cfg = load_config(str(Path(__file__).parent / "micro.yaml"), [
        "executor.kind=ray",
        f"executor.init_kwargs={{runtime_env: {{env_vars: {{AWS_SECRET_ACCESS_KEY: {SECRET}}}}}}}",
    ])
    assert cfg.executor.init_kwargs["runtime_env"]["env_vars"]["AWS_SECRET_ACCESS_KEY"] == SECRET
    recipe = JobRecipe.of("refine", RunContext(cfg, RunLayout("/shared/runs", "micro")), 1)
    assert SECRET not in str(recipe.__dict__)
    rebuilt = recipe.context().cfg  # what a worker runs: every stage section intact
    assert rebuilt.model_dump(exclude={"executor"}) == cfg.model_dump(exclude={"executor"})
