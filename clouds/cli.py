"""The `clouds` command: run the pipeline, rerun one stage, and look inside artifacts."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

# No telemetry from an offline machine (and no failed DNS lookups in the log).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    help="CLOUDS: train segmenters that generalize to unseen domains by making foundation models collaborate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug messages")) -> None:
    # Our own packages speak at INFO; libraries (httpx, open_clip, ...) only when something is wrong.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("clouds", "artifacts", "stages", "models", "pipelines"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


@app.command()
def inspect(
    url: str = typer.Argument(..., help="artifact folder: a path or any fsspec URL"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    pixels: bool = typer.Option(True, "--pixels/--no-pixels", help="count class pixels of label members (reads every sample)"),
) -> None:
    """Show an artifact's shards, samples, members, domains, lineage and class pixel shares."""
    from artifacts import ArtifactError
    from artifacts.summary import summarize

    try:
        info = summarize(url, class_pixels=pixels)
    except ArtifactError as err:
        if as_json:
            print(json.dumps({"url": url, "committed": False, "error": str(err)}))
            raise typer.Exit(1) from None
        _fail(str(err))
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
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


RUN_HELP = "full-round | loop | ingest | prompts | synthesize | pseudo-label | refine | train | evaluate"


def _run_flow(mode: str, config: Path, root: str | None, run: str | None, round_: int, rounds: int | None,
              force: bool, overrides: list[str]) -> dict:
    from clouds.config import ConfigError, load_config

    try:
        load_config(config, overrides)  # fail here, before Prefect starts, on a bad config
    except ConfigError as err:
        _fail(str(err))
    from pipelines.clouds_flow import MODES, clouds

    if mode not in MODES:
        _fail(f"unknown stage or mode {mode!r}; choose one of: {', '.join(MODES)}")
    from artifacts import ArtifactError
    from pipelines.lock import RunLockedError

    try:
        return clouds(mode=mode, config=str(config), overrides=overrides or None, root=root, run=run, round=round_,
                      rounds=rounds, force=force)
    except (RunLockedError, ArtifactError, FileNotFoundError, ValueError) as err:
        # Bad input the user can fix: one line naming the file/sample/key (Prefect has logged the details).
        _fail(f"{mode} failed: {err}")


@app.command()
def run(
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
    result = _run_flow(mode, config, root, run_name, round_, rounds, force, overrides)
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
    config: Path = typer.Option(Path("configs/tiny.yaml"), "--config", "-c", help="YAML profile"),
    root: str = typer.Option(None, "--root", help="artifact root URL"),
    force: bool = typer.Option(False, "--force", help="rebuild every stage"),
) -> None:
    """The embedded demo: the whole loop on built-in data and tiny models, on CPU, ending with a report."""
    import time

    start = time.perf_counter()
    result = _run_flow("loop", config, root, None, 1, None, force, [])
    minutes = (time.perf_counter() - start) / 60
    out = Console()
    out.print(_rounds_table(config, root))
    out.print(f"\n[bold green]demo finished in {minutes:.1f} min[/]; open the report: [bold]{result.get('report')}[/]")


def _rounds_table(config: Path, root: str | None) -> Table:
    """mIoU per round and domain, read back from the committed evaluation artifacts."""
    from clouds.config import load_config
    from pipelines.layout import RunLayout
    from pipelines.results import collect_rounds

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
    from clouds.server import LocalPrefect

    with LocalPrefect(port=port, home=home) as local:
        if deploy:
            local.deploy()
        console.print(f"Prefect UI: [bold]{local.api_url[:-4]}[/]  (Ctrl-C stops the server and the worker)")
        console.print("try: prefect deployment run clouds/full-round --watch")
        local.wait()


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
