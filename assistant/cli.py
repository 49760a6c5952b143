"""`nhs-assistant ingest | ask | eval | bench`: a thin client of the library.

`bench` runs the repository's benchmark (bench/, not part of the installed package) when there is one.

Library errors (AssistantError) become one red line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.errors import AssistantError

warnings.filterwarnings("ignore", category=DeprecationWarning, module="langchain_community")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.run is not _bench:  # only `bench` passes its arguments on
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    from rich.console import Console

    err = Console(stderr=True)
    try:
        settings = Settings.from_env(index_dir=args.index, corpus_dir=getattr(args, "corpus", None))
        return int(args.run(args, settings))
    except AssistantError as error:
        err.print(f"[red]Error:[/red] {error}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("[red]Interrupted.[/red]")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nhs-assistant", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--index", type=Path, help="index folder (ASSISTANT_INDEX_DIR, default index/)")
        return p

    p = command("ingest", "Index documents (PDF, DOCX, TXT, MD, HTML) into the FAISS index.")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the corpus folder)")
    p.add_argument("--corpus", type=Path, help="corpus folder (ASSISTANT_CORPUS_DIR, default corpus/)")
    p.set_defaults(run=_ingest)

    p = command("ask", "Answer a question with cited sources.")
    p.add_argument("question")
    p.add_argument("--k", type=int, help="chunks to retrieve (default 5)")
    p.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_ask)

    p = command("eval", "Score the assistant on a QA set (JSONL), beside the naive baseline.")
    p.add_argument("qa", type=Path)
    p.add_argument("--corpus", type=Path, help="build a temporary index from this folder")
    p.add_argument("--k", type=int)
    p.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, help="write report.json, results.jsonl and report.html here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_eval)

    p = sub.add_parser(
        "bench",
        help="Run the repository's benchmark (python -m bench) from a source checkout.",
        description="Run bench/ of the source checkout in the current folder; arguments go to it "
        "(see `python -m bench --help`).",
        add_help=False,
    )
    p.set_defaults(run=_bench, index=None)
    return parser


def _progress_bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=_console(stderr=True),
    )


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.store import build_index

    paths = args.paths or [settings.corpus_dir]
    out = _console()
    with _progress_bar() as bar:
        task = bar.add_task("reading", total=None)

        def progress(message: str, n: int, total: int) -> None:
            bar.update(task, description=message[:40], completed=n, total=total)

        report = build_index(paths, settings, progress=progress)
    for skipped in report.skipped:
        _console(stderr=True).print(f"[yellow]Skipped[/yellow] {skipped}")
    out.print(
        f"Indexed {report.files} files ({report.reused_files} unchanged, {report.removed_files} removed), "
        f"{report.pages} pages, {report.chunks} chunks in {report.seconds:.1f} s; "
        f"embedded {report.embedded} chunks"
        + (f" at {report.chunks_per_s:.1f} chunks/s" if report.embedded else "")
        + f"; {len(report.skipped)} skipped; index {report.index_type} in {settings.index_dir}/"
    )
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.chain import Chain

    answer = Chain(settings.with_(k=args.k)).ask(args.question, mode=args.mode)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return 0
    out = _console()
    for notice in answer.trace.get("notices", []):
        _console(stderr=True).print(f"[yellow]{notice}[/yellow]")
    out.print(answer.text)
    if answer.citations:
        out.print("\nSources:")
    for c in answer.citations:
        page = f", page {c.page}" if c.page else ""
        where = f", {c.section}" if c.section else ""
        out.print(f"[{c.n}] {c.title} ({c.source}{page}{where})\n    “{c.quote}”")
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    from assistant.chain import Chain
    from assistant.evaluation import evaluate, load_qa
    from assistant.loaders import load_corpus
    from assistant.store import build_index

    items = load_qa(args.qa)  # validated whole before anything runs
    settings = settings.with_(k=args.k)
    with tempfile.TemporaryDirectory(prefix="nhs-eval-") as tmp:
        corpus = args.corpus or settings.corpus_dir
        if args.corpus:
            settings = settings.with_(index_dir=Path(tmp) / "index")
            build_index([args.corpus], settings)
        chain = Chain(settings)
        baseline = None
        if args.baseline:
            from assistant.baseline import NaiveBaseline
            from assistant.embeddings import load_embeddings

            docs, _ = load_corpus([Path(p) for p in chain.index.manifest.get("inputs", [str(corpus)])])
            baseline = NaiveBaseline(docs, load_embeddings(settings)).ask
        with _progress_bar() as bar:
            task = bar.add_task("evaluating", total=len(items))
            report = evaluate(
                items,
                ask=lambda q: chain.ask(q, mode=args.mode),
                baseline=baseline,
                out_dir=args.out,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
    if args.json:
        print(json.dumps({k: report[k] for k in ("metrics", "baseline", "per_tag", "n")}, ensure_ascii=False))
        return 0
    _print_metrics(report)
    if args.out:
        _console().print(f"Report: {args.out / 'report.html'}")
    return 0


def _print_metrics(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{report['n']} questions")
    table.add_column("metric")
    table.add_column("assistant", justify="right")
    table.add_column("baseline", justify="right")
    base = report.get("baseline") or {}
    for key, value in report["metrics"].items():
        table.add_row(key, _fmt(value), _fmt(base.get(key)))
    _console().print(table)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    """Hand over to `python -m bench` of the checkout in the current folder (the package holds no benchmark)."""
    import subprocess

    if not (Path.cwd() / "bench" / "__main__.py").is_file():
        raise AssistantError(
            f"No benchmark in {Path.cwd()}: it lives in the source repository's bench/ folder, not in the "
            "installed package; run `nhs-assistant bench` (or `python -m bench`) from a checkout."
        )
    return subprocess.call([sys.executable, "-m", "bench", *args.rest], cwd=Path.cwd())


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def run() -> None:
    """The `nhs-assistant` entry point: main(), then leave the process without tearing the interpreter down.

    Finalising the thousands of classes LangChain and pydantic define, one by one, only to exit costs
    0.3-0.4 s of CPU: a quarter of a new `nhs-assistant ask` (docs/PERFORMANCE.md). Exit handlers still
    run and the output is flushed; files the commands write are closed before main() returns.
    """
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()  # e.g. LangSmith's trace upload when LANGSMITH_TRACING is on
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
