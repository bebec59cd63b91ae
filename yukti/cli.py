"""The `yukti` command: backends, check, bench, zoo, datasets, results."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from rich.console import Console
from rich.table import Table

from yukti.errors import YuktiError

# Tables are wide; piped output (make bench, CI logs) must not squeeze them to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def cmd_backends(args: argparse.Namespace) -> int:
    import yukti

    table = Table(title="Yukti backends")
    for col in ("backend", "available", "version", "reason / description"):
        table.add_column(col)
    for info in yukti.backends():
        table.add_row(info.name, "[green]yes[/]" if info.available else "[red]no[/]", info.version,
                      info.description if info.available else info.reason)
    console.print(table)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import yukti
    from yukti.engine import resolve_model

    model = resolve_model(args.model)
    console.print(repr(model), markup=False)
    if model.has_onnx:
        console.print(f"operators: {', '.join(model.op_types)}")
    table = Table(title=f"Can each backend run {model.name}?")
    for col in ("backend", "available", "supports", "details"):
        table.add_column(col)
    for info in yukti.backends():
        if not info.available:
            table.add_row(info.name, "[red]no[/]", "—", info.reason)
            continue
        support = yukti.runner_class(info.name).supports(model)
        table.add_row(info.name, "[green]yes[/]", "[green]yes[/]" if support else "[red]no[/]", support.reason if support else support.describe())
    console.print(table)
    return 0


SUMMARY_COLUMNS = [
    ("backend", "backend"), ("batch_size", "batch"), ("latency_p50_us", "p50 µs"), ("latency_p99_us", "p99 µs"), ("latency_native_p50_us", "native p50 µs"),
    ("throughput_per_s", "samples/s"), ("argmax_agreement", "argmax agree"), ("max_abs_diff", "max |Δ|"),
    ("auc", "AUC"), ("eff_at_bkg_1pct", "ε_sig@1% bkg"), ("prepare_s", "prepare s"), ("status", "status"),
]


def results_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for _, header in SUMMARY_COLUMNS:
        table.add_column(header, justify="left" if header in ("backend", "status") else "right")
    for _, row in frame.iterrows():
        cells = []
        for column, _ in SUMMARY_COLUMNS:
            value = row[column]
            if column == "throughput_per_s" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:,.0f}")
            elif column == "max_abs_diff" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.1e}")
            elif column in ("latency_p50_us", "latency_p99_us") and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:,.1f}" if value >= 10 else f"{value:.2f}")
            elif column == "latency_native_p50_us" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.3f}")
            elif column == "prepare_s" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.3f}")
            elif column == "status" and value != "ok":
                cells.append(f"[yellow]{value}[/]")
            else:
                cells.append(_fmt(value, 4))
        table.add_row(*cells)
    return table


def cmd_bench(args: argparse.Namespace) -> int:
    from yukti.engine import TimingPolicy, benchmark

    backends = [b for part in args.backends for b in part.split(",") if b] if args.backends else None
    policy = TimingPolicy(time_budget_s=args.time_budget, min_calls=args.min_calls)
    frame = benchmark(args.model, backends=backends, batch_sizes=args.batch, data=args.data, threads=args.threads,
                      signal=args.signal, policy=policy, max_eval_samples=args.eval_samples,
                      store=not args.no_store, progress=not args.quiet and sys.stderr.isatty() or args.progress)
    first = frame.iloc[0]
    title = (f"{first['model']} on {first['dataset']} · {first['n_samples']} samples · signal {first['signal_class']} · "
             f"{args.threads} thread(s) · {first['cpu']}")
    if args.json:
        _write(args.json, frame.to_json(orient="records", date_format="iso", indent=1, default_handler=str))
    if args.csv:
        _write(args.csv, frame.to_csv(index=False))
    if args.json != "-" and args.csv != "-":
        console.print(results_table(frame, title))
        for _, row in frame[frame["status"] != "ok"].drop_duplicates("backend").iterrows():
            console.print(f"[yellow]{row['backend']}[/]: {row['status']}: {str(row['error']).splitlines()[0]}")
        if not args.no_store:
            from yukti.results import default_store

            console.print(f"stored in {default_store()}", style="dim")
    return 0 if (frame["status"].isin(["ok", "unavailable", "unsupported"])).all() else 1


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        from yukti.cache import atomic_write_bytes

        atomic_write_bytes(Path(target), text.encode())


CHOICE_COLUMNS = [
    ("latency_p50_us", "p50 µs"), ("latency_p99_us", "p99 µs"), ("throughput_per_s", "samples/s"),
    ("accuracy_drop", "acc. drop"), ("auc_drop", "AUC drop"), ("prepare_s", "prepare s"),
]


def cmd_choose(args: argparse.Namespace) -> int:
    """Exit 0 when a backend meets every constraint, 1 when none does (the table says what each misses)."""
    from yukti.chooser import choose
    from yukti.engine import TimingPolicy

    backends = [b for part in args.backends for b in part.split(",") if b] if args.backends else None
    choice = choose(args.model, batch_size=args.batch, max_p50_us=args.max_p50_us, max_p99_us=args.max_p99_us,
                    min_throughput_per_s=args.min_throughput, max_accuracy_drop=args.max_accuracy_drop,
                    max_auc_drop=args.max_auc_drop, max_prepare_s=args.max_prepare_s, backends=backends,
                    objective=args.objective, measure=args.measure, data=args.data, threads=args.threads,
                    signal=args.signal, policy=TimingPolicy(time_budget_s=args.time_budget, min_calls=args.min_calls),
                    max_eval_samples=args.eval_samples, store=not args.no_store)
    if args.json:
        _write(args.json, choice.table().to_json(orient="records", date_format="iso", indent=1, default_handler=str))
        if args.json == "-":
            return 0 if choice.winner is not None else 1
    front = set(choice.pareto()["backend"]) if any(c.measured for c in choice) else set()
    winner = choice.winner
    table = Table(title=f"Choosing a backend for {choice.model} · batch {choice.batch_size} · {choice.threads} thread(s) · "
                        f"objective {choice.objective} · {choice.describe_constraints()}")
    for header in ("#", "backend", *(h for _, h in CHOICE_COLUMNS), "pareto", "source", "verdict"):
        table.add_column(header, justify="right" if header not in ("backend", "source", "verdict", "pareto") else "left")
    missed = {check.name for c in choice for check in c.misses}
    for c in choice:
        cells = []
        for column, _ in CHOICE_COLUMNS:
            text = _fmt(c[column], 4)
            failed = [check for check in c.misses if check.name in missed and _constraint_column(check.name) == column]
            cells.append(f"[red]{text}[/]" if failed else text)
        if c is winner:
            verdict = "[bold green]WINNER[/]"
        elif c.meets:
            verdict = "[green]meets all[/]"
        elif c.measured:
            verdict = "[red]misses " + ", ".join(check.name for check in c.misses) + "[/]"
        else:
            verdict = f"[yellow]{c.status}[/]"
        table.add_row(str(c.rank), f"[bold]{c.backend}[/]" if c is winner else c.backend, *cells,
                      "★" if c.backend in front else "", c.source or "—", verdict)
    console.print(table)
    console.print(choice.explain(), markup=False, highlight=False)
    console.print("pareto ★: not dominated in (p99 µs, accuracy loss, prepare s) among the measured candidates; "
                  "exit code 0 = a winner, 1 = none meets the constraints", style="dim")
    return 0 if winner is not None else 1


def _constraint_column(name: str) -> str:
    from yukti.chooser import CONSTRAINTS

    return CONSTRAINTS[name].column


def cmd_export(args: argparse.Namespace) -> int:
    import yukti
    from yukti.engine import resolve_model

    cls = yukti.runner_class(args.backend)
    if not hasattr(cls, "export"):
        raise YuktiError(f"backend {args.backend!r} has no standalone export")
    model = resolve_model(args.model)
    for path in cls.export(model, args.output):
        console.print(f"wrote {path}", markup=False)
    console.print(f"build: cmake -S {args.output} -B {args.output}/build && cmake --build {args.output}/build", markup=False)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from yukti import zoo

    table = Table(title="Yukti zoo")
    table.add_column("model")
    table.add_column("description")
    for name, text in zoo.describe().items():
        table.add_row(name, text)
    console.print(table)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from yukti import datasets

    for name in datasets.names():
        console.print(f"{name}: {(datasets._LOADERS[name].__doc__ or '').strip().splitlines()[0]}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from yukti import results

    frame = results.load()
    if frame.empty:
        console.print("no stored results yet: run `yukti bench`")
        return 0
    if args.model:
        frame = frame[frame["model"] == args.model]
    last = frame[frame["run_id"].isin(frame.drop_duplicates("run_id").tail(args.last)["run_id"])]
    for run_id, run in last.groupby("run_id", sort=False):
        first = run.iloc[0]
        console.print(results_table(run, f"run {run_id} · {first['model']} · {first['dataset']} · {first['timestamp']}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yukti", description="Run a small network fast on every backend, measured side by side.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list backends and whether they run here").set_defaults(func=cmd_backends)
    # Parsed by dashboard.launch (its options and Streamlit's pass through); listed here for --help.
    sub.add_parser("dashboard", help="start the Streamlit dashboard (yukti dashboard --help for options)", add_help=False)
    check = sub.add_parser("check", help="which backends can run MODEL (no compiling)")
    check.add_argument("model", help="zoo model name or path to an .onnx file")
    check.set_defaults(func=cmd_check)
    bench = sub.add_parser("bench", help="measure backends on a model")
    bench.add_argument("model", nargs="?", default="jet_dnn", help="zoo model name or .onnx path (default: jet_dnn)")
    bench.add_argument("-b", "--backends", nargs="+", help="backend names (default: every registered one)")
    bench.add_argument("--batch", nargs="+", type=int, default=[1, 1024], help="batch sizes (default: 1 1024)")
    bench.add_argument("--data", help="dataset name or table path (default: the zoo model's own test split)")
    bench.add_argument("--signal", help="signal class for AUC and efficiencies (name or index)")
    bench.add_argument("--threads", type=int, default=1, help="threads per backend (default: 1)")
    bench.add_argument("--time-budget", type=float, default=1.0, help="seconds of timed calls per backend and batch size")
    bench.add_argument("--min-calls", type=int, default=100, help="minimum timed calls per backend and batch size")
    bench.add_argument("--eval-samples", type=int, default=20_000, help="samples for the accuracy comparison")
    bench.add_argument("--json", metavar="PATH", help="also write the rows as JSON ('-' for stdout)")
    bench.add_argument("--csv", metavar="PATH", help="also write the rows as CSV ('-' for stdout)")
    bench.add_argument("--no-store", action="store_true", help="do not append the results to the local store")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    bench.set_defaults(func=cmd_bench)
    choose = sub.add_parser("choose", help="rank backends for MODEL under constraints and name the winner",
                            description="Rank backends under constraints. Exit code: 0 when a backend meets every "
                                        "constraint (the winner), 1 when none does, 2 on a usage error.")
    choose.add_argument("model", nargs="?", default="jet_dnn", help="zoo model name or .onnx path (default: jet_dnn)")
    choose.add_argument("--batch", type=int, default=1, help="batch size the constraints apply to (default: 1)")
    choose.add_argument("--max-p50-us", type=float, help="median latency per call, microseconds")
    choose.add_argument("--max-p99-us", type=float, help="99th-percentile latency per call, microseconds")
    choose.add_argument("--min-throughput", type=float, help="samples per second")
    choose.add_argument("--max-accuracy-drop", type=float, help="1 - argmax agreement with the float reference")
    choose.add_argument("--max-auc-drop", type=float, help="reference AUC minus the backend's (labelled data only)")
    choose.add_argument("--max-prepare-s", type=float, help="prepare (convert/compile/load) seconds, as recorded")
    choose.add_argument("-b", "--backends", nargs="+", help="candidate backends (default: every registered one)")
    choose.add_argument("--objective", default="p99", choices=["p99", "p50", "throughput", "accuracy", "prepare"],
                        help="how candidates meeting the constraints are ranked (default: p99)")
    choose.add_argument("--measure", default="auto", choices=["auto", "never", "always"],
                        help="auto: reuse stored results, measure what is missing; never: stored only; always: re-measure")
    choose.add_argument("--data", help="dataset name or table path (default: the zoo model's own test split)")
    choose.add_argument("--signal", help="signal class for AUC (name or index)")
    choose.add_argument("--threads", type=int, default=1, help="threads per backend (default: 1)")
    choose.add_argument("--time-budget", type=float, default=1.0, help="seconds of timed calls per backend when measuring")
    choose.add_argument("--min-calls", type=int, default=100, help="minimum timed calls per backend when measuring")
    choose.add_argument("--eval-samples", type=int, default=20_000, help="samples for the accuracy comparison when measuring")
    choose.add_argument("--json", metavar="PATH", help="also write the ranked candidates as JSON ('-' for stdout only)")
    choose.add_argument("--no-store", action="store_true", help="neither read nor append the local results store")
    choose.set_defaults(func=cmd_choose)
    export = sub.add_parser("export", help="write a backend's standalone sources for MODEL")
    export.add_argument("model", help="zoo model name or .onnx path")
    export.add_argument("--backend", default="cpp", help="backend with an export (default: cpp)")
    export.add_argument("-o", "--output", required=True, help="output folder")
    export.set_defaults(func=cmd_export)
    sub.add_parser("zoo", help="list the zoo models").set_defaults(func=cmd_zoo)
    sub.add_parser("datasets", help="list the datasets").set_defaults(func=cmd_datasets)
    res = sub.add_parser("results", help="show stored results")
    res.add_argument("--last", type=int, default=1, help="how many runs (default 1)")
    res.add_argument("--model", help="only this model")
    res.set_defaults(func=cmd_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dashboard"]:  # argparse.REMAINDER on a subparser would reject `--port 8600`
        from dashboard.launch import main as dashboard_main

        return dashboard_main(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "signal", None) is not None and args.signal.isdigit():
        args.signal = int(args.signal)
    try:
        return args.func(args)
    except YuktiError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
