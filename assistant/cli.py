"""`nhs-assistant ingest | ask | eval | serve | keys | feedback | bench`: a thin client of the library.

`bench` runs the repository's benchmark (bench/, not part of the installed package) when there is one.

Library errors (AssistantError) become one red line on stderr and exit code 1. Text that comes from
documents or file names is printed literally (Rich markup escaped), never as markup.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from assistant import literal
from assistant.config import Settings
from assistant.errors import AssistantError, ConfigError

warnings.filterwarnings("ignore", category=DeprecationWarning, module="langchain_community")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.run is not _bench:  # only `bench` passes its arguments on
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    from rich.console import Console

    err = Console(stderr=True, emoji=False)
    try:
        settings = Settings.from_env(index_dir=args.index, corpus_dir=getattr(args, "corpus", None))
        return int(args.run(args, settings))
    except AssistantError as error:
        err.print(f"[red]Error:[/red] {literal.console(str(error))}", highlight=False)
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

    p = command(
        "ingest",
        "Add or update documents (PDF, DOCX, TXT, MD, HTML) in the index (a FAISS folder, or PostgreSQL "
        "with ASSISTANT_STORE=postgres); documents indexed earlier stay unless --prune.",
    )
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the corpus folder)")
    p.add_argument("--corpus", type=Path, help="corpus folder (ASSISTANT_CORPUS_DIR, default corpus/)")
    p.add_argument(
        "--prune", action="store_true", help="remove indexed documents that are not found in PATHS"
    )
    p.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="fail at once if another ingest is writing the index (default: wait for it)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="read, chunk and embed on a Ray cluster (ADDRESS: auto, host:6379 or ray://host:10001; "
        "a local one when left out; put --ray after PATHS)",
    )
    p.add_argument("--workers", type=int, help="embedding workers with --ray (default: the cluster's CPUs)")
    p.set_defaults(run=_ingest)

    p = command("ask", "Answer a question with cited sources.")
    p.add_argument("question")
    p.add_argument("--k", type=int, help="chunks to retrieve (default 5)")
    p.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_ask)

    p = command("eval", "Score the assistant on a QA set (JSONL), beside the naive baseline.")
    p.add_argument("qa", type=Path)
    p.add_argument(
        "--corpus",
        dest="corpora",
        type=Path,
        action="append",
        help="build a temporary index from this folder (repeat for several)",
    )
    p.add_argument("--k", type=int)
    p.add_argument("--mode", choices=["extractive", "generative"], default="extractive")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", type=Path, help="write report.json, results.jsonl and report.html here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_eval)

    p = command("serve", "Serve the OpenAI-compatible HTTP API (docs at /docs).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--corpus", type=Path, help="corpus folder (ASSISTANT_CORPUS_DIR, default corpus/)")
    p.set_defaults(run=_serve)

    p = command("keys", "Make an API key for `serve`.")
    keys = p.add_subparsers(required=True, metavar="ACTION")
    add = keys.add_parser("add", help="print a new key once, and the line that stores its hash")
    add.add_argument("--role", choices=["reader", "admin"], default="reader")
    add.set_defaults(run=_keys_add)

    p = command("feedback", "Rated answers, and thumbs-down corrections as QA candidates.")
    feedback = p.add_subparsers(required=True, metavar="ACTION")
    export = feedback.add_parser(
        "export",
        help="write the thumbs-down answers with a correction as QA JSONL lines (stdout or --out)",
    )
    export.add_argument("--out", type=Path, help="write the candidates to this .jsonl file")
    export.set_defaults(run=_feedback_export)

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

    return Console(stderr=stderr, highlight=False, emoji=False)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import nullcontext

    from assistant.store import build_index, open_store

    paths = list(args.paths)
    address = args.ray
    if address and Path(address).exists():  # `ingest --ray corpus/`: a folder, not a cluster address
        paths.append(Path(address))
        address = ""
    paths = paths or [settings.corpus_dir]
    if args.workers is not None and args.ray is None:
        raise ConfigError("--workers needs --ray (a serial ingest runs in this process).")
    pipelines: Any = nullcontext()
    if args.ray is not None:
        from assistant.distributed import ray_pipeline

        pipelines = ray_pipeline(settings, address or None, args.workers)
    out, err = _console(), _console(stderr=True)
    with pipelines as pipeline, _progress_bar() as bar:
        task = bar.add_task("reading", total=None)

        def progress(message: str, n: int, total: int) -> None:
            bar.update(task, description=literal.console(message[:40]), completed=n, total=total)

        report = build_index(
            paths,
            settings,
            progress=progress,
            prune=args.prune,
            wait=args.wait,
            on_wait=lambda message: bar.console.print(f"[yellow]{literal.console(message)}[/yellow]"),
            pipeline=pipeline,
        )
    for skipped in report.skipped:
        err.print(f"[yellow]Skipped[/yellow] {literal.console(str(skipped))}")
    if args.prune:
        earlier = f"{report.removed_files} removed as not in PATHS (--prune)"
    else:
        earlier = f"{report.kept_files} kept from earlier runs"
        if report.kept_files:
            earlier += " though not in PATHS (use --prune to remove them)"
    out.print(
        f"Indexed {report.files} files ({report.reused_files} unchanged, {earlier}), "
        f"{report.pages} pages, {report.chunks} chunks in {report.seconds:.1f} s; "
        f"embedded {report.embedded} chunks"
        + (f" at {report.chunks_per_s:.1f} chunks/s" if report.embedded else "")
        + f"; {len(report.skipped)} skipped; index {report.index_type} in {literal.console(open_store(settings).where)}"
    )
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.chain import Chain

    answer = Chain(settings.with_(k=args.k)).ask(args.question, mode=args.mode)
    if args.json:
        data = answer.to_dict()
        data["retrieved"].sort(key=lambda r: -r["score"])  # best first, as a reader expects
        print(json.dumps(data, ensure_ascii=False))
        return 0
    from rich.markdown import Markdown

    out = _console()
    for notice in answer.trace.get("notices", []):
        _console(stderr=True).print(f"[yellow]{literal.console(notice)}[/yellow]")
    # Our labels ("**Target:**") and list items rendered; everything from the documents literal.
    out.print(Markdown(literal.terminal_markdown(answer.text)))
    if answer.citations:
        out.print("\nSources:")
    for c in answer.citations:
        page = f", page {c.page}" if c.page else ""
        where = f", {c.section}" if c.section else ""
        out.print(literal.console(f"[{c.n}] {c.title} ({c.source}{page}{where})\n    “{c.quote}”"))
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
        corpora = args.corpora or [settings.corpus_dir]
        if args.corpora:  # a throwaway index in a folder, never the shared store
            settings = settings.with_(index_dir=Path(tmp) / "index", store="faiss")
            build_index(args.corpora, settings)
        chain = Chain(settings)
        baseline = None
        if args.baseline:
            from assistant.baseline import NaiveBaseline
            from assistant.embeddings import load_embeddings

            inputs = chain.index.manifest.get("inputs") or [str(c) for c in corpora]
            docs, _ = load_corpus([Path(p) for p in inputs])
            baseline = NaiveBaseline(docs, load_embeddings(settings)).ask
        with _progress_bar() as bar:
            task = bar.add_task("evaluating", total=len(items))
            report = evaluate(
                items,
                ask=lambda q, history: chain.ask(q, history, mode=args.mode),
                baseline=baseline,
                out_dir=args.out,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
                qa_file=str(args.qa),
            )
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "run"}, ensure_ascii=False))
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


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.server import serve

    err = _console(stderr=True)
    serve(settings, args.host, args.port, args.workers, log=lambda msg: err.print(f"[yellow]{msg}[/yellow]"))
    return 0


def _keys_add(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.keys import new_key

    token, line = new_key(args.role)
    # plain print: a key wrapped by the terminal width could not be copied whole
    print(f"New {args.role} key (shown only this once; give it to the client):\n  {token}")
    print(
        f"Store its hash in ASSISTANT_API_KEYS (entries separated by commas) or as a line of ASSISTANT_API_KEYS_FILE:\n  {line}"
    )
    return 0


def _feedback_export(args: argparse.Namespace, settings: Settings) -> int:
    from assistant.feedback import qa_candidates, read_feedback

    rows = read_feedback(settings.feedback_db)
    lines = [json.dumps(c, ensure_ascii=False) for c in qa_candidates(rows)]
    text = "".join(f"{line}\n" for line in lines)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise AssistantError(
            f"Could not write {args.out} ({err.strerror}); pass --out a writable path."
        ) from None
    _console(stderr=True).print(
        f"{len(lines)} QA candidates from {len(rows)} ratings written to {literal.console(str(args.out))}; "
        "add each one's evidence, then append it to a set in eval/qa/.",
        highlight=False,
    )
    return 0


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
