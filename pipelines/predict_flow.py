"""The `clouds/predict` deployment: a committed checkpoint (or RUN:best) applied to INPUTS, as a Prefect flow.

The flow is named `clouds`, like the pipeline's, so its deployment is listed as `clouds/predict` beside
`clouds/full-round`; it only wires the predict stage (stages/predict) to its parameters.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from clouds.config.run import RunConfig
from stages.predict.checkpoints import chosen_short_side, resolve_checkpoint
from stages.predict.inference import InferenceSettings
from stages.predict.stage import predict


@flow(name="clouds", flow_run_name="predict")
def predict_flow(
    checkpoint: str,
    inputs: str,
    out: str,
    overlays: str | None = None,
    mode: str = "resize",
    short_side: int | None = None,
    window: int = 512,
    weights: str = "student",
    confidence: bool = False,
    device: str = "auto",
    batch_size: int = 4,
    root: str | None = None,
) -> dict[str, Any]:
    """Predict INPUTS (image file, folder, glob or artifact URL) with CHECKPOINT (folder or RUN:best) into `out`.

    `short_side`: None = the side the checkpoint's own profile evaluates at, 0 = native size.
    Finished shards of an interrupted run are kept; an `out` already committed with the same settings is reused.
    """
    url, best = resolve_checkpoint(checkpoint, root or RunConfig().root)
    if best is not None:
        get_run_logger().info("%s: round %d (%s %.4f) -> %s", checkpoint, best.round, best.metric, best.score, url)
    settings = InferenceSettings(mode=mode, short_side=chosen_short_side(short_side, url), window=window, weights=weights, confidence=confidence)
    return predict(url, inputs, out, settings, overlays=overlays, batch_size=batch_size, device=device,
                   progress=False)
