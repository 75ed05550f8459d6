"""The `clouds` command: run the pipeline, rerun one stage, and look inside artifacts."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from clouds.prefect_env import PROJECT_LOGGERS, apply_prefect_defaults

apply_prefect_defaults()  # before anything imports prefect

STOP_GRACE_S = 3.0
"""After Ctrl-C / SIGTERM / SIGHUP, the CLI exits within this many seconds, however busy Prefect still is."""
API_LOST_EXIT = 3
"""Exit status when the Prefect API the run reports to went away mid-run (see clouds.api_watch)."""

app = typer.Typer(
    help="CLOUDS: train segmenters that generalize to unseen domains by making foundation models collaborate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        console.print(f"[bold]hint:[/] {escape(hint)}", soft_wrap=True)
    raise typer.Exit(2)


class ConsoleFormatter(logging.Formatter):
    """One line per record unless --debug: Prefect logs every failed task and flow with its traceback, 100-300
    lines above the one `error:` line that names the bad input (the API logs keep the tracebacks)."""

    def __init__(self, tracebacks: bool):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        return text if record.levelno < logging.ERROR else text.split("\n", 1)[0]


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at each record, not the stream it was created with: commands run
    in one process one after another (tests, notebooks) each capture stderr, and a handler bound to an
    earlier, closed capture printed a logging traceback instead of the record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201 - logging's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - logging assigns it in __init__ and setStream
        pass


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug messages"),
    debug: bool = typer.Option(False, "--debug", help="print full tracebacks (errors are one line otherwise)"),
) -> None:
    # Our own packages speak at INFO; libraries (httpx, open_clip, ...) only when something is wrong.
    handler = StderrHandler()
    handler.setFormatter(ConsoleFormatter(tracebacks=debug or verbose))
    # force: Prefect's import installs its own console handler on the root logger, bound to the stderr of
    # that moment; ours replaces it (Prefect's setup keeps a root handler that is not its own).
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    ctx.obj = {"debug": debug}


@app.command()
def inspect(
    url: str = typer.Argument(..., help="artifact folder: a path or any fsspec URL"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    pixels: bool = typer.Option(True, "--pixels/--no-pixels", help="count class pixels of label members (reads every sample)"),
    verify: bool | None = typer.Option(
        None, "--verify/--no-verify", show_default="on for local storage",
        help="check every member's sha256 against the manifest and report each bad one (reads every sample)",
    ),
) -> None:
    """Show an artifact's shards, samples, members, domains, lineage and class pixel shares.

    Exits non-zero when the artifact cannot be opened or, with --verify, when any member is bad.
    """
    from artifacts import ArtifactError
    from artifacts.summary import summarize

    try:
        info = summarize(url, class_pixels=pixels, verify=verify)
    except ArtifactError as err:
        if as_json:
            print(json.dumps({"url": url, "committed": False, "error": str(err)}))
            raise typer.Exit(1) from None
        _fail(str(err))
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
        if info["problems"]:
            raise typer.Exit(1)
        return
    out = Console()
    head = Table(title=f"artifact {info['url']}", show_header=False)
    lineage = info["lineage"]
    for name, value in [
        ("stage", info["stage"]), ("committed", lineage.get("committed_at")), ("kind", info["kind"]),
        ("shards", info["shards"]), ("samples", info["samples"]), ("bytes", f"{info.get('bytes', 0):,}"),
        ("members", ", ".join(info["keys"])), ("domains", ", ".join(f"{k}: {v}" for k, v in info.get("domains", {}).items())),
        ("config hash", lineage.get("config_hash")), ("code version", lineage.get("code_version")),
        ("content hash", lineage.get("content_hash", "")[:16]),
        ("verified", _verified(info)),
    ]:
        head.add_row(name, str(value))
    for item in lineage.get("inputs", []):
        head.add_row("input", f"{item['url']} ({item.get('stage')}, {str(item.get('content_hash'))[:12]})")
    for key, value in lineage.get("stats", {}).items():
        head.add_row(f"stats.{key}", json.dumps(value, default=str)[:120])
    out.print(head)
    if info["class_pixels"]:
        from clouds.labels import CLASS_NAMES

        members = list(info["class_pixels"])
        table = Table(title="class pixel share (%)")
        table.add_column("class")
        for m in members:
            table.add_column(m, justify="right")
        for name in CLASS_NAMES:
            table.add_row(name, *(f"{100 * info['class_pixels'][m]['share'][name]:.2f}" for m in members))
        table.add_row("[dim]ignore (255)[/]", *(f"{100 * info['class_pixels'][m]['ignore_share']:.2f}" for m in members))
        out.print(table)
    if info["problems"]:
        from rich.markup import escape

        for problem in info["problems"]:  # every bad member, one line each
            console.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(2)


def _verified(info: dict) -> str:
    if not info["verified"]:
        return "no (member checksums not read: --no-verify, or remote storage)"
    return f"FAILED: {len(info['problems'])} problem(s)" if info["problems"] else "yes: every member matches its sha256"


@app.command()
def show(
    url: str = typer.Argument(..., help="artifact folder"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write"),
    index: int = typer.Option(None, "--index", "-i", help="sample position in the manifest"),
    key: str = typer.Option(None, "--key", "-k", help="sample key"),
) -> None:
    """Write one sample's image beside colour overlays of its label members (Cityscapes palette)."""
    from artifacts import ArtifactError, image_member, open_artifact
    from artifacts.summary import label_members
    from clouds.viz import sample_figure

    if (index is None) == (key is None):
        _fail("give exactly one of --index N or --key K")
    try:
        art = open_artifact(url)
        if key is None:
            if not 0 <= index < art.num_samples:
                _fail(f"--index {index} is out of range: {url} has {art.num_samples} samples")
            key = art.keys[index]
        sample = art.get(key)
        path = sample_figure(sample, image_member(sample), label_members(list(sample)), out)
    except (ArtifactError, KeyError) as err:
        _fail(str(err).strip('"'))
    console.print(f"wrote {path}")


RUN_HELP = ("full-round | loop | ingest | prompts | synthesize | pseudo-label | refine | train | evaluate | "
            "pretrain (the label-free tower pretraining, once) | pretrain-sam (the toy SAM's training, once)")


ROUND_MODES = {"full-round", "pseudo-label", "refine", "train", "evaluate"}


def _run_flow(mode: str, config: Path, root: str | None, run: str | None, round_: int, rounds: int | None,
              force: bool, overrides: list[str], debug: bool = False) -> dict:
    from clouds.config import load_config
    from clouds.config.base import check_safe_name
    from clouds.errors import CloudsError

    try:
        cfg = load_config(config, overrides)  # fail here, before Prefect starts, on a bad config
        if run is not None:
            check_safe_name(run, "--run")  # the config's run.name is checked by the schema; --run bypasses it
    except CloudsError as err:
        _fail(str(err))
    home = _private_prefect_home()
    from pipelines.clouds_flow import MODES, clouds

    if mode not in MODES:
        _fail(f"unknown stage or mode {mode!r}; choose one of: {', '.join(MODES)}")
    from clouds.api_watch import ApiWatchdog
    from clouds.hints import Invocation, hint_for
    from clouds.layout import RunLayout
    from clouds.processes import Shutdown, exit_now, shutdown_on_signals, start_prefect_server
    from pipelines.lock import drop_own_lock

    how = Invocation(str(config), root, run, tuple(overrides))
    resume = how.command(mode, round_=round_ if mode in ROUND_MODES else None, rounds=rounds)
    layout = RunLayout(root or cfg.run.root, run or cfg.run.name)
    said: list[int] = []

    def stopped(signum: int) -> None:
        drop_own_lock(layout.base)  # when the unwinding did not reach RunLock.release within the grace time
        if not said:
            said.append(signum)
            console.print(f"[bold red]stopped:[/] {_stop_summary(signum, cfg, layout)}; resume with: {resume}",
                          soft_wrap=True, markup=True, highlight=False)

    server_process = None

    def remove_home() -> None:  # other threads may still write there until the exit: remove, then make sure
        import os
        import shutil

        if server_process is not None and server_process.poll() is None:
            server_process.terminate()  # it dies with us anyway (PR_SET_PDEATHSIG); its database goes now
        for _ in range(3):
            shutil.rmtree(home, ignore_errors=True)
            if not os.path.exists(home):
                return

    def api_lost(reason: str) -> None:  # from the watchdog's thread, while the main thread still trains
        from rich.markup import escape

        fix = ("start it again (clouds server) or unset PREFECT_API_URL, then resume with: " if external
               else "its run history is gone with it, your artifacts are not; resume with: ")
        said_by_server = "" if external else _server_said()
        console.print(f"[bold red]error:[/] {escape(f'{mode} stopped {_where_stopped(cfg, layout)}: {reason}')}"
                      f"{escape(said_by_server)}", soft_wrap=True, markup=True, highlight=False)
        console.print(f"[bold]hint:[/] {fix}{resume}", soft_wrap=True, markup=True, highlight=False)
        # Without the exit hooks: Prefect's would flush to the dead API, and the first of them to need a
        # client started a fresh temporary server that outlived us. Ours are the only ones worth running.
        drop_own_lock(layout.base)
        exit_now(API_LOST_EXIT, hooks=False, last=remove_home if home is not None else None)

    try:
        # Ctrl-C, SIGTERM and SIGHUP unwind for at most STOP_GRACE_S; Prefect's temporary server is ours.
        with shutdown_on_signals(interrupt=True, grace_s=STOP_GRACE_S, on_expire=stopped):
            api_url, server_process = start_prefect_server()
            external = server_process is None
            with ApiWatchdog(api_url, api_lost, process=server_process):
                return clouds(mode=mode, config=str(config), overrides=overrides or None, root=root, run=run,
                              round=round_, rounds=rounds, force=force)
    except (CloudsError, FileNotFoundError) as err:
        # Bad input the user can fix: one line naming the file/sample/key, and the fix when it is known. Any
        # other exception (a plain ValueError included) is a bug and keeps its traceback.
        _fail(f"{mode} failed: {err}", hint_for(str(err), cfg, how))
    except RuntimeError as err:  # e.g. Prefect's temporary server did not start on a busy machine
        hint = hint_for(str(err), cfg, how)
        if hint is None or debug:
            raise
        _fail(f"{mode} failed: {err}{_server_said()}", hint)
    except Shutdown as stop:
        stopped(stop.signum)
        if home is None:  # a server or a Prefect home that outlives us: Prefect's hooks flush the run history
            exit_now(128 + stop.signum)
        # The private home and its temporary server go with us: flushing history into them only cost time
        # (on a loaded machine the hooks pushed the exit past 5 s after Ctrl-C).
        exit_now(128 + stop.signum, hooks=False, last=remove_home)


def _server_said() -> str:
    """The temporary server's last output lines on one line, for an error about the server."""
    from clouds.processes import server_log_tail

    tail = " | ".join(line.strip() for line in server_log_tail().splitlines() if line.strip())
    return f" (the server's last output: {tail})" if tail else ""


def _private_prefect_home() -> str | None:
    """Without a Prefect server (PREFECT_API_URL), each command keeps Prefect's state in a home of its own.

    Prefect's temporary server writes to PREFECT_HOME/prefect.db: several `clouds` commands at once shared
    ~/.prefect's SQLite file and died with "database is locked" or timed out starting. That state dies with
    the temporary server anyway (resuming reads the artifacts, not Prefect); for run history across
    commands, start `clouds server` and export PREFECT_API_URL. A PREFECT_HOME the user set is kept.
    """
    import atexit
    import os
    import shutil
    import tempfile

    if os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_HOME"):
        return None
    home = tempfile.mkdtemp(prefix="clouds-prefect-")
    os.environ["PREFECT_HOME"] = home
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # after the server stops (atexit is LIFO)
    return home


def _stop_summary(signum: int, cfg, layout) -> str:  # noqa: ANN001 - CloudsConfig, RunLayout (lazy imports)
    """Which signal, and the first artifact of the run left unfinished (its complete parts are kept)."""
    import signal

    where = _where_stopped(cfg, layout)
    return f"{signal.Signals(signum).name} received{' ' if where.startswith('while') else '; '}{where.strip('()')}"


def _where_stopped(cfg, layout) -> str:  # noqa: ANN001 - CloudsConfig, RunLayout (lazy imports)
    """The first artifact of the run left unfinished, or that all committed work is kept."""
    from artifacts import Folder, is_committed
    from stages.table import STAGES, run_order

    # the table's folders in build order (not `expected`: that imports stage modules, too slow after a signal)
    urls = [e.output(layout) for e in STAGES.values() if not e.in_loop]
    urls += [layout.data(s.name) for s in (cfg.data.source, *cfg.data.targets)]
    urls += [e.output(layout, k) for e, k in run_order(cfg.loop.rounds) if not e.fans_out]
    for url in urls:
        try:
            if Folder.at(url).exists() and not is_committed(url):
                return f"while building {url} (its complete shards / last snapshot are kept)"
        except Exception:  # noqa: BLE001 - a summary must never stop the exit
            break
    return f"(every committed artifact of {layout.base} is kept)"


@app.command()
def run(
    ctx: typer.Context,
    mode: str = typer.Argument(..., help=RUN_HELP),
    config: Path = typer.Option(Path("configs/tiny.yaml"), "--config", "-c", help="YAML profile"),
    root: str = typer.Option(None, "--root", help="artifact root URL (default: run.root of the config)"),
    run_name: str = typer.Option(None, "--run", help="run name (default: run.name of the config)"),
    round_: int = typer.Option(1, "--round", "-r", help="round for full-round and per-round stages (0 = warm-up)"),
    rounds: int = typer.Option(None, "--rounds", help="number of rounds for 'loop' (default: loop.rounds)"),
    force: bool = typer.Option(False, "--force", help="rerun stages even when their output is up to date"),
    overrides: list[str] = typer.Option([], "--set", help="config override key.path=value (repeatable)"),
) -> None:
    """Run the pipeline, or one stage of it, through the same Prefect flows a deployment runs."""
    result = _run_flow(mode, config, root, run_name, round_, rounds, force, overrides,
                       debug=(ctx.obj or {}).get("debug", False))
    out = Console()
    table = Table(title=f"clouds {mode}")
    for col in ("stage", "artifact", "status"):
        table.add_column(col)
    for step in result.get("steps", []):
        table.add_row(str(step.get("stage")), str(step.get("url")), "reused" if step.get("reused") else "built")
    out.print(table)
    if result.get("report"):
        out.print(f"report: [bold]{result['report']}[/]")


@app.command()
def demo(
    ctx: typer.Context,
    config: Path = typer.Option(Path("configs/tiny.yaml"), "--config", "-c", help="YAML profile"),
    root: str = typer.Option(None, "--root", help="artifact root URL"),
    force: bool = typer.Option(False, "--force", help="rebuild every stage"),
) -> None:
    """The embedded demo: the whole loop on built-in data and tiny models, on CPU, ending with a report."""
    import time

    start = time.perf_counter()
    result = _run_flow("loop", config, root, None, 1, None, force, [], debug=(ctx.obj or {}).get("debug", False))
    minutes = (time.perf_counter() - start) / 60
    out = Console()
    out.print(_rounds_table(config, root))
    out.print(f"\n[bold green]demo finished in {minutes:.1f} min[/]; open the report: [bold]{result.get('report')}[/]")


def _rounds_table(config: Path, root: str | None) -> Table:
    """mIoU per round and domain, read back from the committed evaluation artifacts."""
    from clouds.config import load_config
    from clouds.layout import RunLayout
    from stages.report.rounds import collect_rounds

    cfg = load_config(config)
    layout = RunLayout(root or cfg.run.root, cfg.run.name)
    rounds = collect_rounds(layout, cfg.loop.rounds)
    domains = sorted({d for r in rounds for d in r.miou})
    table = Table(title="mIoU (%) per round")
    table.add_column("round")
    for col in (*(d.removeprefix("target-") for d in domains), "pseudo (teacher)", "pseudo (refined)"):
        table.add_column(col, justify="right")
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for r in rounds:
        name = "source only" if r.round == 0 else str(r.round)
        table.add_row(name, *(pct(r.miou.get(d)) for d in domains), pct(r.pseudo_before), pct(r.pseudo_after))
    return table


@app.command()
def server(
    port: int = typer.Option(4200, help="port of the local Prefect server (binds 127.0.0.1 only)"),
    home: Path = typer.Option(Path(".prefect"), help="PREFECT_HOME for the server's database"),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="run `prefect deploy --all` once the server is up"),
) -> None:
    """Start a local Prefect server and a process worker, deploy prefect.yaml, and wait; Ctrl-C stops both."""
    from clouds.processes import shutdown_on_signals
    from clouds.server import LocalPrefect

    # SIGTERM/SIGHUP stop the server and the worker as Ctrl-C does (`wait` returns, the `with` stops both).
    with shutdown_on_signals(), LocalPrefect(port=port, home=home) as local:
        if deploy:
            local.deploy()
        console.print(f"Prefect UI: [bold]{local.api_url[:-4]}[/]  (Ctrl-C stops the server and the worker)")
        console.print(f"in another shell: export PREFECT_API_URL={local.api_url} PREFECT_HOME={local.home}",
                      soft_wrap=True, highlight=False)
        console.print("try: prefect deployment run clouds/full-round --watch")
        local.wait()


@app.command()
def status(
    config: Path = typer.Option(Path("configs/tiny.yaml"), "--config", "-c", help="YAML profile"),
    root: str = typer.Option(None, "--root", help="artifact root URL (default: run.root of the config)"),
    run_name: str = typer.Option(None, "--run", help="run name (default: run.name of the config)"),
    rounds: int = typer.Option(None, "--rounds", min=0, help="rounds the run has (default: loop.rounds)"),
    overrides: list[str] = typer.Option([], "--set", help="config override key.path=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of a table"),
) -> None:
    """Every artifact of a run as built, stale (and what changed) or missing; runs nothing, writes nothing."""
    import shlex

    from clouds.config import load_config
    from clouds.errors import CloudsError
    from clouds.layout import RunLayout
    from pipelines.status import rebuild_args, run_status

    try:
        cfg = load_config(config, overrides)
        layout = RunLayout(root or cfg.run.root, run_name or cfg.run.name)
        result = run_status(cfg, layout, rounds)
    except CloudsError as err:
        _fail(str(err))
    args = rebuild_args(result)
    if args is not None:
        args += ["--config", str(config), *(["--root", root] if root else []), *(["--run", run_name] if run_name else [])]
        args += [a for o in overrides for a in ("--set", o)]
    command = None if args is None else "clouds " + shlex.join(args)
    if as_json:
        print(json.dumps({**result.to_json(), "rebuild": command}, indent=2, sort_keys=True, default=str))
        return
    from rich.markup import escape

    colour = {"built": "green", "stale": "yellow", "missing": "red"}
    table = Table(title=f"clouds status: {result.base} ({result.rounds} round(s))")
    for col in ("artifact", "stage", "round", "state"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for a in result.artifacts:
        table.add_row(a.name, a.stage, "" if a.round is None else str(a.round),
                      f"[{colour[a.state]}]{a.label}[/]", escape("; ".join(a.reasons)))
    out = Console()
    out.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
    out.print(f"{counts}; " + (f"next: [bold]{escape(command)}[/]" if command else "everything is built"), soft_wrap=True)


PREDICT_RESIZE_HELP = (
    "inference: 'resize' (default) is the evaluation protocol and the reference's (docs/PROTOCOL.md): whole image, "
    "single scale, no sliding window, no TTA, short side resized to --short-side (detectron2 ResizeShortestEdge), "
    "scores upsampled back to the image size; 'slide' (not the reference) runs --window-sized windows over the "
    "full-resolution image and averages overlapping scores"
)


@app.command()
def predict(
    checkpoint: str = typer.Argument(..., help="committed checkpoint folder (a run's round-NNN/train), or RUN:best "
                                      "(RUN:best:DOMAIN ranks by one target's mIoU)"),
    inputs: str = typer.Argument(..., help="an image file, a folder (searched recursively), a quoted glob, or a "
                                  "committed artifact URL"),
    out: str = typer.Option(..., "--out", "-o", help="URL of the output artifact (committed, sharded, resumable)"),
    overlays: str = typer.Option(None, "--overlays", help="also write each colour overlay as DIR/<key>.jpg"),
    mode: str = typer.Option("resize", "--mode", help=PREDICT_RESIZE_HELP),
    short_side: int = typer.Option(None, "--short-side", min=0, show_default="the checkpoint's own: the short side "
                                   "its profile evaluates at (evaluate.short_side)",
                                   help="short side for --mode resize (0 = native size)"),
    window: int = typer.Option(512, "--window", min=32, help="window size for --mode slide (pixels, square)"),
    stride: int = typer.Option(None, "--stride", min=1, help="window step for --mode slide (default 2/3 of --window)"),
    weights: str = typer.Option("student", "--weights", help="student | teacher (the EMA teacher, when saved)"),
    confidence: bool = typer.Option(False, "--confidence/--no-confidence", help="also store conf.png per image"),
    batch_size: int = typer.Option(4, "--batch-size", "-b", min=1, help="images (or windows) per forward pass"),
    shard_size: int = typer.Option(64, "--shard-size", min=1, help="images per output shard (the unit of resume)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    root: str = typer.Option(None, "--root", help="run root for RUN:best (default: run.root, 'runs')"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a committed artifact at --out"),
) -> None:
    """Apply a trained segmenter to images: train-id label PNGs, colour overlays (and confidences) in a committed
    artifact at --out; rerunning after an interruption keeps the finished shards."""
    from clouds.errors import CloudsError
    from stages.predict.errors import PredictInputError
    from stages.predict.inference import InferenceSettings
    from stages.predict.stage import predict as run_predict

    try:
        if weights not in ("student", "teacher"):
            raise PredictInputError(f"--weights must be 'student' or 'teacher', got {weights!r}")
        url = _checkpoint_url(checkpoint, root)
        settings = InferenceSettings(mode=mode, short_side=_short_side(short_side, url), window=window,
                                     stride=stride, weights=weights, confidence=confidence)
        result = run_predict(url, inputs, out, settings, overlays=overlays, overwrite=overwrite,
                             batch_size=batch_size, shard_size=shard_size, device=device)
    except (CloudsError, OSError) as err:
        _fail(str(err), _predict_hint(str(err)))
    reused = " (already committed, reused)" if result.get("skipped") else ""
    console.print(f"predicted {result['images']} image(s) with {url}: {result['url']}{reused}", soft_wrap=True,
                  highlight=False)
    if overlays:
        console.print(f"overlays: {overlays}", highlight=False)


@app.command()
def export(
    checkpoint: str = typer.Argument(..., help="committed checkpoint folder (a run's round-NNN/train), or RUN:best"),
    fmt: str = typer.Option("safetensors", "--format", "-f", help="safetensors (weights + architecture, loaded "
                            "with stages.export.formats) | torchscript (traced at --size, needs only torch) | onnx "
                            "(traced at --size, checked against PyTorch on 3 images; needs clouds[onnx])"),
    out: Path = typer.Option(None, "--out", "-o", help="file to write (default: RUN-round-NNN.<ext> here)"),
    weights: str = typer.Option("student", "--weights", help="student | teacher (the EMA teacher, when saved)"),
    size: tuple[int, int] = typer.Option((512, 1024), "--size", help="HEIGHT WIDTH a torchscript / onnx graph is "
                                         "traced at (its only input size)"),
    root: str = typer.Option(None, "--root", help="run root for RUN:best (default: run.root, 'runs')"),
) -> None:
    """Export a checkpoint as one self-contained file, with a model card (markdown) written next to it."""
    from clouds.errors import CloudsError
    from stages.export.export import export_checkpoint
    from stages.predict.errors import PredictInputError

    try:
        if weights not in ("student", "teacher"):
            raise PredictInputError(f"--weights must be 'student' or 'teacher', got {weights!r}")
        url = _checkpoint_url(checkpoint, root)
        done = export_checkpoint(url, fmt, out, weights=weights, size=size)
    except (CloudsError, OSError) as err:
        _fail(str(err), _predict_hint(str(err)))
    console.print(f"exported {url} as {fmt}: {done.path} (model card: {done.card})", soft_wrap=True, highlight=False)
    if done.max_abs_diff is not None:
        console.print(f"ONNX vs PyTorch on 3 images: max abs score difference {done.max_abs_diff:.2e}", highlight=False)


@app.command()
def evaluate(
    checkpoint: str = typer.Argument(..., help="committed checkpoint folder (a run's round-NNN/train), or RUN:best"),
    data: str = typer.Option(..., "--data", "-d", help="a YAML profile (its data.targets and evaluate settings), "
                             "a committed artifact with seg.png labels, or a dataset folder (with --kind)"),
    out: str = typer.Option(..., "--out", "-o", help="URL of the evaluation report (a committed folder artifact)"),
    kind: str = typer.Option(None, "--kind", help="layout of a dataset folder: cityscapes | bdd10k | mapillary | "
                             "acdc | gta5 | synthia (docs/DATASETS.md)"),
    split: str = typer.Option("val", "--split", help="split folder of a dataset folder"),
    condition: str = typer.Option(None, "--condition", help="ACDC condition: fog | night | rain | snow"),
    work: str = typer.Option(None, "--work", help="where datasets are ingested (default: <out>-data)"),
    short_side: int = typer.Option(None, "--short-side", min=0, show_default="a --data profile's evaluate.short_side, "
                                   "else the checkpoint's own (its profile's)",
                                   help="resize the short side to this (0 = native)"),
    weights: str = typer.Option("student", "--weights", help="student | teacher"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    root: str = typer.Option(None, "--root", help="run root for RUN:best (default: run.root, 'runs')"),
) -> None:
    """Score a committed checkpoint on any data, without a run folder: the evaluate stage's report (per-class and
    per-domain parquet, confusion matrices, report.md, iou.png) at --out."""
    from clouds.config import EvaluateConfig
    from clouds.errors import CloudsError
    from stages.evaluate.standalone import evaluate_checkpoint, scoring_for
    from stages.predict.errors import PredictInputError

    try:
        if weights not in ("student", "teacher"):
            raise PredictInputError(f"--weights must be 'student' or 'teacher', got {weights!r}")
        url = _checkpoint_url(checkpoint, root)
        scoring = scoring_for(data, work or f"{out.rstrip('/')}-data", kind=kind, split=split, condition=condition)
        changes: dict = {"weights": weights}
        if short_side is not None or not scoring.from_profile:
            changes["short_side"] = _short_side(short_side, url)
        scoring.settings = EvaluateConfig.model_validate({**scoring.settings.model_dump(), **changes})
        result = evaluate_checkpoint(url, scoring, out, device=device)
    except (CloudsError, OSError) as err:
        _fail(str(err), _predict_hint(str(err)))
    out_console = Console()
    for name, value in result.get("miou", {}).items():
        out_console.print(f"{name}: mIoU {'–' if value is None else f'{100 * value:.2f}'}", highlight=False)
    reused = " (already committed, reused)" if result.get("skipped") else ""
    console.print(f"report: {out}/report.md{reused}", soft_wrap=True, highlight=False)


def _checkpoint_url(spec: str, root: str | None) -> str:
    """CHECKPOINT as typed, with RUN:best resolved (and said, since it picks a round for the user)."""
    from clouds.config.run import RunConfig
    from stages.predict.checkpoints import resolve_checkpoint

    url, best = resolve_checkpoint(spec, root or RunConfig().root)
    if best is not None:
        console.print(f"{spec}: round {best.round} ({best.metric} {100 * best.score:.2f}) -> {url}",
                      soft_wrap=True, highlight=False)
    return url


def _short_side(option: int | None, checkpoint_url: str) -> int | None:
    """--short-side as given (0 = native), else the side the checkpoint's own profile evaluates at, said."""
    from stages.predict.checkpoints import chosen_short_side

    side = chosen_short_side(option, checkpoint_url)
    if option is None:
        console.print(f"short side: {side or 'native'}, the checkpoint's own (--short-side changes it)", highlight=False)
    return side


def _predict_hint(message: str) -> str | None:
    if "is not a committed artifact" in message and "checkpoint" in message:
        return "CHECKPOINT is a run's committed round-NNN/train folder, or RUN:best (see clouds predict --help)"
    if "already a committed artifact" in message:
        return "pass --overwrite to replace it, or choose another --out"
    if "no CUDA device is available" in message:
        return "use --device cpu (or --device auto)"
    return None


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
