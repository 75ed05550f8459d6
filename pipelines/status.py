"""`clouds status`: every artifact of a run as built, stale (and why) or missing, without running anything.

Read-only: it reads commit markers and progress records, never a model, a shard or a Prefect API. The
artifacts, their config hashes and their inputs come from the stage table (stages/table.py), the values the
flows decide reuse on, and the verdict "built" is the one up-to-date rule (artifacts.identity) itself; what is added here is
the reason, and staleness carried downstream (an artifact built from an input that will be rebuilt).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from artifacts import ArtifactError, Folder, is_committed, read_lineage
from artifacts.lineage import input_record
from artifacts.shards import SHARD_RE
from clouds.config import CloudsConfig
from clouds.layout import RunLayout, absolute_root
from stages import expected as exp
from stages.table import STAGES, StageEntry, run_artifacts

BUILT, STALE, MISSING = "built", "stale", "missing"


class _Absent:
    """A key on one side only (not recorded by the lineage, or no longer in the config); JSON: "(absent)"."""

    def __repr__(self) -> str:
        return "(absent)"

    __str__ = __repr__

    def __deepcopy__(self, memo: dict[int, Any]) -> _Absent:  # dataclasses.asdict copies values: keep one
        return self


ABSENT = _Absent()


@dataclass(frozen=True)
class Change:
    key: str  # dotted config key, e.g. "train.lr"
    recorded: Any  # as the artifact's lineage recorded it
    current: Any  # as the config holds it now

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.recorded)} -> {_show(self.current)}"


@dataclass
class ArtifactStatus:
    name: str  # path under the run folder: "data/source", "round-001/refine", "report"
    url: str
    stage: str
    round: int | None
    state: str  # built | stale | missing
    reasons: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # config keys that differ from the lineage
    partial: bool = False  # missing, but its folder holds work of an unfinished run
    inputs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.state} (partial)" if self.partial else self.state

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["changes"] = [{k: str(v) if v is ABSENT else v for k, v in asdict(c).items()} for c in self.changes]
        return out


@dataclass
class RunStatus:
    base: str
    rounds: int
    artifacts: list[ArtifactStatus]

    def first_pending(self) -> ArtifactStatus | None:
        return next((a for a in self.artifacts if a.state != BUILT), None)

    def counts(self) -> dict[str, int]:
        return {s: sum(a.state == s for a in self.artifacts) for s in (BUILT, STALE, MISSING)}

    def to_json(self) -> dict[str, Any]:
        return {"run": self.base, "rounds": self.rounds, "counts": self.counts(),
                "artifacts": [a.to_json() for a in self.artifacts]}


def _show(value: Any) -> str:
    return str(value) if value is ABSENT else json.dumps(value, default=str)


def _key(url: str) -> str:
    """One spelling per artifact: the train flow names absolute inputs when it trains on Ray."""
    return absolute_root(url).rstrip("/")


def config_changes(current: dict[str, Any], recorded: dict[str, Any]) -> list[Change]:
    """Dotted keys whose recorded value differs from the config's, in the config's order."""
    changes = [Change(k, recorded.get(k, ABSENT), v) for k, v in current.items() if recorded.get(k, ABSENT) != v]
    return changes + [Change(k, v, ABSENT) for k, v in recorded.items() if k not in current]


def _partial(e: exp.Expected) -> str | None:
    """What an unfinished run left in the folder of an uncommitted artifact, and whether a rerun resumes it."""
    from artifacts.writer import PROGRESS
    from stages.train.checkpoints import LATEST
    from stages.train.checkpoints import PROGRESS as TRAIN_PROGRESS

    folder = Folder.at(e.url)
    names = [n for n in folder.listdir() if not (n.startswith(".") and n.endswith(".tmp"))]
    if not names:
        return None
    try:
        records = {u: input_record(u) for u in e.inputs} if all(is_committed(u) for u in e.inputs) else None
    except ArtifactError:
        records = None
    if PROGRESS in names:  # a sharded stage's writer: complete shards are kept by a run of the same identity
        shards = [n for n in names if SHARD_RE.match(n)]
        complete = [n for n in shards if folder.exists("_parts", n.removesuffix(".tar") + ".json")]
        try:
            identity = json.loads(folder.read_bytes(PROGRESS))
        except (ArtifactError, json.JSONDecodeError):
            identity = None
        same = records is not None and identity == json.loads(json.dumps(
            {"stage": e.stage, "config_hash": e.config_hash, "inputs": [records[u] for u in e.inputs]}))
        if same:
            return f"partial: {len(complete)} complete shard(s) kept, a rerun resumes"
        return f"partial: {len(shards)} shard(s) from other settings or inputs, a rerun starts over"
    if TRAIN_PROGRESS in names:  # training snapshots: resumed by a run of the same config and input contents
        try:
            pointer = json.loads(Folder.at(folder.url_of(TRAIN_PROGRESS)).read_bytes(LATEST))
        except (ArtifactError, json.JSONDecodeError):
            pointer = None
        if pointer is not None:
            same = records is not None and pointer.get("identity") == {
                "config_hash": e.config_hash, "inputs": {u: records[u]["content_hash"] for u in e.inputs}}
            if same:
                return f"partial: training snapshot at step {pointer.get('step')} kept, a rerun resumes"
            return "partial: training snapshot from other settings or inputs, a rerun starts over"
    shards = sum(1 for n in names if SHARD_RE.match(n))
    what = f"{shards} shard(s)" if shards else f"{len(names)} file(s)"
    return f"partial: {what} but no commit marker nor progress record, a rerun starts over"


def _own_reasons(e: exp.Expected, names: dict[str, str]) -> tuple[list[str], list[Change]]:
    """Why a committed artifact fails `Identity.is_current`, in the order that check looks."""
    try:
        lineage = read_lineage(e.url)
    except ArtifactError as err:
        return [f"commit marker unreadable: {err}"], []
    if lineage.get("stage") != e.stage:
        return [f"written by stage {lineage.get('stage')!r}, not {e.stage!r}"], []
    reasons: list[str] = []
    changes: list[Change] = []
    recorded_inputs = {i.get("url"): i.get("content_hash") for i in lineage.get("inputs", []) if isinstance(i, dict)}
    if lineage.get("config_hash") != e.config_hash:
        recorded = e.recorded(lineage)
        if recorded is None:
            reasons.append(f"config changed (the lineage does not record the settings; the hash covers {e.covers})")
        else:
            changes = config_changes(e.settings, recorded)
            if changes:
                reasons.append("config changed: " + ", ".join(map(str, changes)))
            elif set(recorded_inputs) == set(e.inputs):
                reasons.append(f"config hash differs though no recorded setting does (the hash covers {e.covers}; "
                               f"built by code {lineage.get('code_version')})")
    if set(recorded_inputs) != set(e.inputs):
        gone = sorted(set(recorded_inputs) - set(e.inputs))
        new = [u for u in e.inputs if u not in recorded_inputs]
        parts = [f"now reads {', '.join(names.get(_key(u), u) for u in new)}"] if new else []
        parts += [f"no longer reads {', '.join(gone)}"] if gone else []
        reasons.append("inputs changed: " + "; ".join(parts))
    for url, content in recorded_inputs.items():
        if url not in e.inputs:
            continue
        shown = names.get(_key(url), url)
        if not is_committed(url):
            reasons.append(f"input {shown} is missing")
            continue
        try:
            now = input_record(url)["content_hash"]
        except ArtifactError as err:
            reasons.append(f"input {shown} unreadable: {err}")
            continue
        if now != content:
            reasons.append(f"input {shown} changed since it was built")
    return reasons or ["not up to date"], changes


def classify(e: exp.Expected, done: dict[str, ArtifactStatus], base: str) -> ArtifactStatus:
    """One artifact's status, given those of the artifacts before it (keyed by `_key(url)`)."""
    names = {k: s.name for k, s in done.items()}
    status = ArtifactStatus(_name(e.url, base), e.url, e.stage, e.round, BUILT, inputs=list(e.inputs))
    upstream = [(u, done.get(_key(u))) for u in e.inputs]
    pending = [(names.get(_key(u), u), s.state) for u, s in upstream if s is not None and s.state != BUILT]
    if not is_committed(e.url):
        status.state = MISSING
        if pending:
            status.reasons.append("waiting on " + ", ".join(n + (" (stale)" if st == STALE else "") for n, st in pending))
        partial = _partial(e)
        if partial:
            status.partial = True
            status.reasons.append(partial)
        if not status.reasons:
            status.reasons.append("not built yet")
        return status
    try:
        up_to_date = e.identity.is_current(e.url)
    except ArtifactError:
        up_to_date = False
    if not up_to_date:
        status.state = STALE
        status.reasons, status.changes = _own_reasons(e, names)
    # Built from inputs that will be rebuilt first: stale too (unless the rebuilt input comes out the same).
    stale = [n for n, state in pending if state == STALE]
    missing = [n for n, state in pending if state == MISSING and not any(n in r for r in status.reasons)]
    for names_, state in ((stale, STALE), (missing, MISSING)):
        if names_:
            status.state = STALE
            status.reasons.append(f"input {names_[0]} is {state}" if len(names_) == 1
                                  else f"inputs {', '.join(names_)} are {state}")
    return status


def _name(url: str, base: str) -> str:
    key, base = _key(url), _key(base)
    return key[len(base) + 1:] if key.startswith(base + "/") else url


def run_status(cfg: CloudsConfig, layout: RunLayout, rounds: int | None = None,
               table: Mapping[str, StageEntry] = STAGES) -> RunStatus:
    """Every artifact `clouds run loop --rounds N` (N: `rounds`, default loop.rounds) builds, in build order."""
    last = cfg.loop.rounds if rounds is None else rounds
    if last < 0:
        raise ValueError(f"rounds must be >= 0, got {last}")
    done: dict[str, ArtifactStatus] = {}
    for e in run_artifacts(cfg, layout, last, table):
        done[_key(e.url)] = classify(e, done, layout.base)
    return RunStatus(layout.base, last, list(done.values()))


def rebuild_args(status: RunStatus) -> list[str] | None:
    """`clouds run` arguments (less config, root, run and overrides) that build the first artifact that is
    not built, and whatever it needs; None when everything is built."""
    first = status.first_pending()
    if first is None:
        return None
    if first.round is not None:
        return ["run", "full-round", "--round", str(first.round)]
    if first.stage == "report":
        return ["run", "full-round", "--round", str(status.rounds)]
    return ["run", first.stage]
