"""The synthesize stage: prompts artifact in, sharded generated-image artifact out, resumable by shard."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from artifacts import Artifact, ArtifactWriter, open_artifact
from artifacts.identity import config_hash
from clouds.config import SynthesizeConfig
from clouds.errors import CloudsError
from stages.prompts import read_prompts
from stages.sharded import ShardedJob
from stages.synthesize.backend import ImageBackend, Rendered, build_backend, image_problem, to_uint8
from stages.synthesize.plan import ImageJob, num_shards, plan_images, shard_jobs

log = logging.getLogger(__name__)

STAGE = "synthesize"
DOMAIN = "generated"
TRUE_LABEL = "true.seg.png"


class ImageGenerationError(CloudsError, RuntimeError):
    """An image stayed NaN/black/flagged through every retry; the message names it and its prompt."""


def synthesize_settings(cfg: SynthesizeConfig, seed: int, shard_max_samples: int,
                        image_format: str = "png") -> dict[str, Any]:
    """What the images depend on besides the prompts (sharding decides each image's seed): hashed and
    recorded as they are."""
    return {"synthesize": cfg.model_dump(mode="json"), "seed": seed,
            "shard_max_samples": shard_max_samples, "image_format": image_format}


def _sample(job: ImageJob, result: Rendered, attempt: int, failures: list[dict[str, Any]], backend: ImageBackend,
            image_format: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "domain": DOMAIN, "index": job.index, "prompt_id": job.prompt.id, "prompt": job.prompt.text,
        "seed": job.seed(attempt), "attempt": attempt, "failed_attempts": failures,
        "backend": backend.name, "model": backend.model, **result.meta,
    }
    sample: dict[str, Any] = {"__key__": job.key, image_format: to_uint8(result.image), "json": meta}
    if result.label is not None:
        sample[TRUE_LABEL] = result.label
    return sample


def _retry(job: ImageJob, first: Rendered, backend: ImageBackend, max_retries: int,
           counter: Counter) -> tuple[Rendered, int, list[dict[str, Any]]]:
    """Regenerate a bad image alone with the seeds of the next attempts, recording every failure."""
    result, attempt, failures = first, 0, []
    while (problem := image_problem(result)) is not None:
        counter[problem] += 1
        failures.append({"attempt": attempt, "seed": job.seed(attempt), "problem": problem})
        if attempt >= max_retries:
            raise ImageGenerationError(
                f"image {job.index} ({job.key}) from prompt {job.prompt.id} {job.prompt.text!r}: "
                f"{', '.join(f['problem'] for f in failures)} for seeds {[f['seed'] for f in failures]} "
                f"(synthesize.max_retries={max_retries})"
            )
        attempt += 1
        log.warning("image %d: %s at attempt %d, retrying with seed %d", job.index, problem, attempt - 1,
                    job.seed(attempt))
        result = backend.render([job.prompt.text], [job.seed(attempt)])[0]
    return result, attempt, failures


def render_samples(
    jobs: Sequence[ImageJob], backend: ImageBackend, cfg: SynthesizeConfig, *, image_format: str = "png",
    progress: tqdm | None = None, counter: Counter | None = None,
) -> Iterator[dict[str, Any]]:
    """Samples for `jobs`, rendered `cfg.batch_size` at a time, bad images retried one by one.

    `counter` collects problems by kind ('nan', 'black', 'nsfw'), images made, and images retried.
    """
    counter = counter if counter is not None else Counter()
    for start in range(0, len(jobs), cfg.batch_size):
        batch = jobs[start:start + cfg.batch_size]
        results = backend.render([j.prompt.text for j in batch], [j.seed(0) for j in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"backend {backend.name} returned {len(results)} images for {len(batch)} prompts")
        for job, first in zip(batch, results, strict=True):
            result, attempt, failures = _retry(job, first, backend, cfg.max_retries, counter)
            counter["images"] += 1
            counter["retried_images"] += int(attempt > 0)
            yield _sample(job, result, attempt, failures, backend, image_format)
            if progress is not None:
                progress.update(1)


def synthesize_shard(
    writer: ArtifactWriter, shard: int, jobs: Sequence[ImageJob], backend: ImageBackend, cfg: SynthesizeConfig,
    shard_max_samples: int, *, image_format: str = "png", progress: tqdm | None = None,
) -> dict[str, Any]:
    """One unit of work: render images [shard*k, (shard+1)*k) into shard `shard`; returns its stats.

    The stats (images made, retries by problem) are saved with the shard, so they survive a resume.
    """
    counter: Counter = Counter()
    mine = shard_jobs(jobs, shard, shard_max_samples)
    stats: dict[str, Any] = {}

    def samples() -> Iterator[dict[str, Any]]:
        yield from render_samples(mine, backend, cfg, image_format=image_format, progress=progress, counter=counter)
        stats["images"] = counter.pop("images", 0)
        stats["retried_images"] = counter.pop("retried_images", 0)
        stats["retries"] = dict(sorted(counter.items()))

    writer.write_shard(shard, samples(), stats)
    return stats


class _SynthesizeRun:
    """State shared by the shards of one run: the plan, the writer, one backend, one progress bar.

    Shards may be run from several threads (Prefect's default task runner); a diffusers pipeline keeps
    scheduler state between steps, so rendering is serialised by a lock, and the backend is built
    once, by the first shard that needs it.
    """

    def __init__(self, jobs: list[ImageJob], writer: ArtifactWriter, cfg: SynthesizeConfig, shard_max_samples: int,
                 image_format: str, make_backend: Callable[[], ImageBackend], num_prompts: int):
        self.jobs, self.writer, self.cfg = jobs, writer, cfg
        self.shard_max_samples, self.image_format = shard_max_samples, image_format
        self.make_backend, self.num_prompts = make_backend, num_prompts
        self.num_shards = num_shards(len(jobs), shard_max_samples)
        self._backend: ImageBackend | None = None
        self._bar: tqdm | None = None
        self._lock = threading.Lock()

    def run_shard(self, shard: int) -> dict[str, Any]:
        with self._lock:
            if self.writer.is_shard_complete(shard):
                return self.writer.shard_stats()[shard]
            if self._backend is None:
                self._backend = self.make_backend()
            if self._bar is None:
                pending = [s for s in range(self.num_shards) if not self.writer.is_shard_complete(s)]
                todo = sum(len(shard_jobs(self.jobs, s, self.shard_max_samples)) for s in pending)
                self._bar = tqdm(total=len(self.jobs), initial=len(self.jobs) - todo, desc="synthesize",
                                 unit="img", disable=None)
            return synthesize_shard(self.writer, shard, self.jobs, self._backend, self.cfg, self.shard_max_samples,
                                    image_format=self.image_format, progress=self._bar)

    def finish(self, results: dict[int, Any] | None = None) -> Artifact:
        if self._bar is not None:
            self._bar.close()
        per_shard = self.writer.shard_stats()
        retries: Counter = Counter()
        for s in per_shard.values():
            retries.update(s.get("retries", {}))
        stats = {
            "num_images": len(self.jobs), "num_prompts": self.num_prompts, "shards": self.num_shards,
            "retries": dict(sorted(retries.items())),
            "retried_images": sum(s.get("retried_images", 0) for s in per_shard.values()),
        }
        return self.writer.commit(stats=stats, expected_shards=self.num_shards)


def prepare_synthesize(
    prompts_url: str,
    output_url: str,
    cfg: SynthesizeConfig,
    seed: int,
    shard_max_samples: int,
    *,
    backend: ImageBackend | None = None,
    device: str = "auto",
    image_format: str = "png",
    overwrite: bool = False,
    attach: bool = False,
    verify: bool = True,
) -> ShardedJob:
    """The stage as shards (one task each); shards finished by an interrupted run are kept.

    The backend (the model) is loaded only when a shard actually has to be rendered.
    """
    prompts = open_artifact(prompts_url, verify=verify)  # verify: artifacts.verify_reads
    records = read_prompts(prompts)
    jobs = plan_images(records, cfg.num_images, seed)
    settings = synthesize_settings(cfg, seed, shard_max_samples, image_format)
    writer = ArtifactWriter(
        output_url, stage=STAGE, config_hash=config_hash(settings), inputs=[prompts],
        shard_max_samples=shard_max_samples, overwrite=overwrite, attach=attach, params=settings,
    )
    run = _SynthesizeRun(jobs, writer, cfg, shard_max_samples, image_format,
                         (lambda: backend) if backend is not None else (lambda: build_backend(cfg, device)),
                         len(records))
    return ShardedJob(num_shards=run.num_shards, run_shard=run.run_shard, finish=run.finish,
                      is_done=writer.is_shard_complete, name=STAGE)
