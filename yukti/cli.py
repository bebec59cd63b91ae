"""The `yukti` command: backends, check, bench, choose, scan, sweep, export, zoo, datasets, results, cache.

Longer than 400 lines on purpose: every subcommand's parser, its printing and the shared exit
codes, warnings and stream handling (quiet frameworks, store warnings) live together, so that
`yukti --help` and what each command does are read in one place."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import traceback
import warnings
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from yukti.cache import VERIFY_DAMAGE_EXIT_CODE
from yukti.errors import YuktiError
from yukti.safe_names import printable
from yukti.validation import NON_NEGATIVE_LIMIT, POSITIVE_FINITE, POSITIVE_INT

# Tables are wide; piped output (make bench, CI logs) must not squeeze them to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
# Decided at import: without --verbose, descriptor 2 becomes a filtering pipe while a command runs.
STDERR_IS_TERMINAL = sys.stderr.isatty()


class ExitCode(IntEnum):
    OK = 0
    NO_WINNER = 1
    USAGE = 2
    INTERNAL = 3
    BACKEND_ERRORS = 4
    CACHE_DAMAGED = VERIFY_DAMAGE_EXIT_CODE  # owned by yukti.cache; listed here for `yukti --help`


EXIT_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.NO_WINNER: "choose only: no backend meets the constraints",
    ExitCode.USAGE: "usage error: bad arguments, unknown model/backend/dataset, input Yukti refuses",
    ExitCode.INTERNAL: "internal error: an unexpected exception (traceback saved to a file; --debug prints it)",
    ExitCode.BACKEND_ERRORS: "bench only: the run completed and was stored, but a backend failed (status=error)",
    ExitCode.CACHE_DAMAGED: "cache verify only: damaged cache entries were found (and removed)",
}


def exit_codes_help(*codes: ExitCode) -> str:
    """The `exit codes:` block of a --help text."""
    return "exit codes:\n" + "\n".join(f"  {int(code)}  {EXIT_MEANINGS[code]}" for code in codes)


COMMON_EXIT_CODES = (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL)


def shown(text: str) -> Text:
    """Text from a model file, the store or an error, for the terminal: never parsed as rich markup,
    control characters and bidirectional overrides made visible (yukti.safe_names.printable)."""
    return Text(printable(str(text)))


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
    console.print(shown(repr(model)))
    if model.has_onnx:
        console.print(shown(f"operators: {', '.join(model.op_types)}"))
    table = Table(title=shown(f"Can each backend run {model.name}?"))
    for col in ("backend", "available", "supports", "details"):
        table.add_column(col)
    for info in yukti.backends():
        if not info.available:
            table.add_row(info.name, "[red]no[/]", "—", shown(info.reason))
            continue
        support = yukti.runner_class(info.name).supports(model)
        table.add_row(info.name, "[green]yes[/]", "[green]yes[/]" if support else "[red]no[/]",
                      shown(support.reason if support else support.describe()))
    console.print(table)
    return 0


def _headed(*columns: str) -> list[tuple[str, str]]:
    """(column, table header) pairs; a metric's header comes from yukti.vocabulary."""
    from yukti import vocabulary

    return [(c, vocabulary.METRICS[c].header if c in vocabulary.METRICS else {"batch_size": "batch"}.get(c, c)) for c in columns]


SUMMARY_COLUMNS = _headed("backend", "batch_size", "latency_p50_us", "latency_p99_us", "latency_native_p50_us", "throughput_per_s",
                          "gflops", "pct_of_peak", "argmax_agreement", "max_abs_diff", "max_rel_error", "resolution",
                          "score_rel_error", "auc", "eff_at_bkg_1pct", "overflows", "prepare_s", "status")
# Columns of one task (or one kind of backend) only: shown when some row has a value (a regression run
# has no argmax agreement, a float-only run no overflow counts).
# The roofline columns likewise: a model without a FLOP count (no ONNX form) or a run stored before them has none.
_TASK_COLUMNS = {"argmax_agreement", "max_rel_error", "resolution", "score_rel_error", "auc", "eff_at_bkg_1pct", "overflows",
                 "gflops", "pct_of_peak"}


def results_table(frame: pd.DataFrame, title: str | Text) -> Table:
    table = Table(title=title)
    shown_columns = [(c, h) for c, h in SUMMARY_COLUMNS
                     if c not in _TASK_COLUMNS or (c in frame.columns and pd.to_numeric(frame[c], errors="coerce").notna().any())]
    for _, header in shown_columns:
        table.add_column(header, justify="left" if header in ("backend", "status") else "right")
    for _, row in frame.iterrows():
        cells = []
        for column, _ in shown_columns:
            value = row[column]
            if column == "throughput_per_s" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:,.0f}")
            elif column in ("max_abs_diff", "max_rel_error", "resolution", "score_rel_error") and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.1e}")
            elif column in ("latency_p50_us", "latency_p99_us") and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:,.1f}" if value >= 10 else f"{value:.2f}")
            elif column == "latency_native_p50_us" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.3f}")
            elif column == "prepare_s" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.3f}")
            elif column == "gflops" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.3g}" if value < 100 else f"{value:,.0f}")
            elif column == "pct_of_peak" and isinstance(value, float) and not math.isnan(value):
                cells.append(f"{value:.1f}")
            elif column == "status" and value != "ok":
                cells.append(f"[yellow]{value}[/]")
            else:
                cells.append(_fmt(value, 4))
        table.add_row(*cells)
    return table


def cmd_bench(args: argparse.Namespace) -> int:
    """Exit 0 when every backend measured (or was unavailable/unsupported), 4 when one failed: the run
    still completed and was stored, which neither "no winner" (1) nor a crash (3) describes."""
    from yukti.engine import TimingPolicy, benchmark

    backends = [b for part in args.backends for b in part.split(",") if b] if args.backends else None
    policy = TimingPolicy(time_budget_s=args.time_budget, min_calls=args.min_calls)
    frame = benchmark(args.model, backends=backends, batch_sizes=args.batch, data=args.data, threads=args.threads,
                      options=_backend_options(args.option), signal=args.signal, policy=policy, max_eval_samples=args.eval_samples,
                      store=not args.no_store, progress=not args.quiet and STDERR_IS_TERMINAL or args.progress,
                      task=args.task, time_reference=args.time_reference, target=args.target)
    first = frame.iloc[0]
    title = (f"{first['model']} on {first['dataset']} · {first['n_samples']} samples · {first['task']} · "
             f"signal {first['signal_class']} · {args.threads} thread(s) · {first['cpu']}")
    if args.json:
        _write(args.json, frame.to_json(orient="records", date_format="iso", indent=1, default_handler=str))
    if args.csv:
        _write(args.csv, frame.to_csv(index=False))
    if args.json != "-" and args.csv != "-":
        console.print(results_table(frame, shown(title)))
        if "pct_of_peak" in frame and pd.to_numeric(frame["pct_of_peak"], errors="coerce").notna().any():
            from yukti import roofline

            # what "% peak" is a share of, with the caveat of a virtual machine's nominal clock
            console.print(Text(f"% peak: of {roofline.host_peak_gflops(args.threads).arithmetic()}"), style="dim")
        for _, row in frame[frame["status"] != "ok"].drop_duplicates("backend").iterrows():
            console.print(Text.assemble((str(row["backend"]), "yellow"), shown(f": {row['status']}: {str(row['error']).splitlines()[0]}")))
        if not args.no_store:
            from yukti.results import default_store

            console.print(f"stored in {default_store()}", style="dim")
    return ExitCode.OK if (frame["status"].isin(["ok", "unavailable", "unsupported"])).all() else ExitCode.BACKEND_ERRORS


def _backend_option(text: str) -> tuple[str, str, Any]:
    """BACKEND.NAME=VALUE -> (backend, name, value); VALUE is read as JSON when it is JSON (numbers,
    true/false, null, lists), as the text itself otherwise (ap_fixed<16,6>)."""
    match = re.fullmatch(r"([A-Za-z_][\w-]*)\.([A-Za-z_]\w*)=(.*)", text, flags=re.DOTALL)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BACKEND.NAME=VALUE (e.g. fixed.precision='ap_fixed<16,6>', "
                                         f"cpp.threads=2)")
    backend, name, raw = match.groups()
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return backend, name, value


def _backend_options(given: list[tuple[str, str, Any]] | None) -> dict[str, dict[str, Any]] | None:
    options: dict[str, dict[str, Any]] = {}
    for backend, name, value in given or ():
        options.setdefault(backend, {})[name] = value
    return options or None


def _write(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        from yukti.cache import atomic_write_bytes

        atomic_write_bytes(Path(target), text.encode())


CHOICE_COLUMNS = _headed("latency_p50_us", "latency_p99_us", "throughput_per_s", "accuracy_drop", "auc_drop",
                         "max_rel_error", "prepare_s")


def cmd_choose(args: argparse.Namespace) -> int:
    """Exit 0 when a backend meets every constraint, 1 when none does (the table says what each misses)."""
    from yukti.chooser import choose
    from yukti.engine import TimingPolicy

    backends = [b for part in args.backends for b in part.split(",") if b] if args.backends else None
    choice = choose(args.model, batch_size=args.batch, max_p50_us=args.max_p50_us, max_p99_us=args.max_p99_us,
                    min_throughput_per_s=args.min_throughput, max_accuracy_drop=args.max_accuracy_drop,
                    max_auc_drop=args.max_auc_drop, max_prepare_s=args.max_prepare_s, max_abs_error=args.max_abs_error,
                    max_rel_error=args.max_rel_error, max_resolution=args.max_resolution, task=args.task, backends=backends,
                    objective=args.objective, measure=args.measure, data=args.data, threads=args.threads,
                    signal=args.signal, policy=TimingPolicy(time_budget_s=args.time_budget, min_calls=args.min_calls),
                    max_eval_samples=args.eval_samples, store=not args.no_store, target=args.target)
    if args.json:
        _write(args.json, choice.table().to_json(orient="records", date_format="iso", indent=1, default_handler=str))
        if args.json == "-":
            return ExitCode.OK if choice.winner is not None else ExitCode.NO_WINNER
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
    return ExitCode.OK if winner is not None else ExitCode.NO_WINNER


def _int_range(text: str) -> list[int]:
    """'6..18' (every integer), '6..18:2' (a step), '8,10,16' or '12': the CLI's ranges of bits."""
    text = text.strip()
    match = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?::(\d+))?", text)
    if match:
        low, high, step = int(match[1]), int(match[2]), int(match[3] or 1)
        if step < 1 or high < low:
            raise argparse.ArgumentTypeError(f"{text!r}: a range is LOW..HIGH[:STEP] with LOW <= HIGH and STEP >= 1")
        return list(range(low, high + 1, step))
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW..HIGH[:STEP] (6..18, 6..18:2) or a list (8,10,16)") from None


SCAN_TABLE = [("config", "configuration"), ("argmax_agreement", "agreement"), ("auc", "AUC"), ("auc_drop", "AUC drop"),
              ("eff_at_bkg_1pct", "eff @ 1% bkg"), ("max_abs_diff", "max |Δ|"), ("mean_abs_diff", "mean |Δ|"),
              ("overflows", "overflows"), ("prepare_s", "build s")]


def cmd_scan(args: argparse.Namespace) -> int:
    """Exit 0 when the scan ran (and, with a bound, some configuration meets it), 1 when none meets it."""
    from yukti.precision import describe_smallest, scan

    options = {"strategy": args.strategy} if args.strategy else {}
    frame = scan(args.model, args.precision or None, bits=args.bits, int_bits=args.int_bits, per_layer=args.per_layer,
                 margin=args.margin, data=args.data, n_samples=args.eval_samples, backend=args.backend, options=options,
                 signal=args.signal, max_auc_drop=args.max_auc_drop, min_agreement=args.min_agreement,
                 progress=not args.quiet and STDERR_IS_TERMINAL or args.progress, store=not args.no_store,
                 target=args.target)
    if args.json:
        _write(args.json, frame.to_json(orient="records", date_format="iso", indent=1, default_handler=str))
    if args.csv:
        _write(args.csv, frame.to_csv(index=False))
    if args.json == "-" or args.csv == "-":
        return ExitCode.OK
    first = frame.iloc[0]
    table = Table(title=shown(f"precision scan of {first['model']} on {first['dataset']} · {first['n_samples']} samples · "
                              f"{args.backend} · float AUC {_fmt(first.get('reference_auc'))}"))
    columns = [(c, h) for c, h in SCAN_TABLE if c in frame.columns]
    for _, header in columns:
        table.add_column(header, justify="left" if header == "configuration" else "right")
    table.add_column("")
    for _, row in frame.iterrows():
        mark = "[bold green]smallest[/]" if row.get("smallest") is True else ("[green]meets[/]" if row.get("meets") is True else "")
        if row.get("status") != "ok":
            mark = f"[yellow]{escape(str(row.get('error'))[:60])}[/]"
        table.add_row(*[escape(_fmt(row.get(c))) for c, _ in columns], mark)
    console.print(table)
    console.print(describe_smallest(frame), markup=False, highlight=False)
    if not args.no_store:
        from yukti.precision import scan_store

        console.print(f"stored in {scan_store()}", style="dim")
    bounded = args.max_auc_drop is not None or args.min_agreement is not None
    return ExitCode.NO_WINNER if bounded and frame.attrs.get("smallest") is None else ExitCode.OK


def _constraint_column(name: str) -> str:
    from yukti.chooser import CONSTRAINTS

    return CONSTRAINTS[name].column


def cmd_export(args: argparse.Namespace) -> int:
    import yukti
    from yukti.engine import resolve_model
    from yukti.runner import Capability

    cls = yukti.runner_class(args.backend)
    if not cls.has(Capability.EXPORT):
        raise YuktiError(f"backend {args.backend!r} has no standalone export")
    model = resolve_model(args.model)
    # only given when asked: a backend's export may take neither
    given = {key: value for key, value in (("name", args.name), ("march", args.march)) if value}
    for path in cls.export(model, args.output, **given):
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

    contents = results.read_store(warn=False)  # what was skipped is printed here, counted
    if contents.skipped:
        console.print(f"[yellow]skipped {len(contents.skipped)} unreadable file(s)[/] in {escape(str(results.default_store()))}:")
        for item in contents.skipped:
            console.print(f"  {item.path.name}: {item.reason}", markup=False, highlight=False)
    for path in contents.recovered:
        console.print(f"recovered {path.name} from the leftover of a run killed while storing", style="dim", markup=False)
    for item in contents.removed:
        console.print(f"removed {item.path.name}, an incomplete leftover of a killed run", style="dim", markup=False)
    frame = contents.frame
    if frame.empty:
        console.print("no stored results yet: run `yukti bench`")
        return 0
    if args.model:
        frame = frame[frame["model"] == args.model]
        if frame.empty:
            console.print(f"no stored results for model {args.model!r}", markup=False)
            return 0
    last = frame[frame["run_id"].isin(frame.drop_duplicates("run_id").tail(args.last)["run_id"])]
    for run_id, run in last.groupby("run_id", sort=False):
        first = run.iloc[0]
        console.print(results_table(run, shown(f"run {run_id} · {first['model']} · {first['dataset']} · {first['timestamp']}")))
    return 0


SWEEP_EXIT_CODES = """exit codes:
  0    every cell was measured (or its backend is unavailable/unsupported there)
  2    usage error: a bad spec (the message names its line), an unreachable scheduler
  3    internal error: an unexpected exception (traceback saved to a file; --debug prints it)
  4    the sweep completed and every cell is stored, but some ended in error (--resume runs them again)
  130  interrupted (Ctrl-C): finished cells are stored; --resume continues"""


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep spec on Dask; exit 0 when every cell measured (or was unavailable/unsupported), 4 when
    a cell ended in error (all stored), 130 after Ctrl-C (finished cells stored; --resume continues)."""
    from yukti.sweep import INTERRUPTED_EXIT_CODE, SweepInterrupted, sweep

    progress = not args.quiet and STDERR_IS_TERMINAL or args.progress
    # With the progress bar on, the sweep prints its messages above it; without, they are printed here.
    report = None if progress else (lambda message: err_console.print(shown(message), highlight=False))
    try:
        frame = sweep(args.spec, scheduler=args.scheduler, workers=args.workers, resume=args.resume, store=args.store,
                      progress=progress, report=report)
    except SweepInterrupted as exc:
        err_console.print(Text.assemble(("interrupted: ", "yellow"), shown(str(exc))))
        return INTERRUPTED_EXIT_CODE
    except KeyboardInterrupt:
        err_console.print(Text.assemble(("interrupted", "yellow"), " before any cell was measured"))
        return INTERRUPTED_EXIT_CODE
    varying = _varying_options(frame)
    table = Table(title=shown(f"sweep {frame.attrs['sweep']} · {len(frame)} cells"))
    columns = ["model", "backend", "options", "batch", "threads", "status", "p50 µs", "samples/s", "host", "runs"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("batch", "threads", "p50 µs", "samples/s", "runs") else "left")
    for (_, row), options in zip(frame.iterrows(), varying):
        status = str(row["status"])
        table.add_row(shown(row["model"]), row["backend"], shown(options), str(row["batch_size"]), str(row["threads"]),
                      Text(status, style="" if status == "ok" else "yellow"), _fmt(row["latency_p50_us"], 4),
                      _fmt(row["throughput_per_s"], 4), shown(_fmt(row["host"])), str(row["attempts"]) if row["ran"] else "stored")
    console.print(table)
    for _, row in frame[frame["status"] == "error"].iterrows():
        first = str(row["error"]).splitlines()[0] if isinstance(row["error"], str) else ""
        console.print(Text.assemble(("error ", "yellow"), shown(f"cell {row['cell']} ({row['model']} · {row['backend']} · batch "
                                                                f"{row['batch_size']}): {first}")))
    ran = int(frame["ran"].sum())
    errors = int((frame["status"] == "error").sum())
    console.print(f"{len(frame)} cells: {ran} measured now, {len(frame) - ran} already stored, {errors} ended in error · "
                  f"stored in {frame.attrs['store']}", style="dim", markup=False, highlight=False)
    return ExitCode.BACKEND_ERRORS if errors else ExitCode.OK


def _varying_options(frame: pd.DataFrame) -> list[str]:
    """Per cell, the options that differ between cells of its backend (all resolved options are in the store)."""
    parsed = [json.loads(text) for text in frame["options"]]
    varying: dict[str, set[str]] = {}
    for backend in set(frame["backend"]):
        mine = [options for options, b in zip(parsed, frame["backend"]) if b == backend]
        keys = set().union(*mine)
        varying[backend] = {k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in mine}) > 1}
    return [" ".join(f"{k}={options[k]}" for k in sorted(varying[b]) if k in options and k != "threads") or "—"
            for options, b in zip(parsed, frame["backend"])]


def cmd_cache(args: argparse.Namespace) -> int:
    """`yukti cache info|clear|verify`. verify exits 0 when every entry matched its checksums and
    VERIFY_DAMAGE_EXIT_CODE (5) when it found damaged or unverifiable entries (removed: the next
    prepare rebuilds them)."""
    from yukti.cache import VERIFY_DAMAGE_EXIT_CODE, ArtifactCache

    cache = ArtifactCache()

    def size(n: int) -> str:
        for unit in ("B", "KB", "MB", "GB"):
            if n < 1024 or unit == "GB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024
        return ""  # pragma: no cover

    console.print(f"artifact cache: {cache.root}", markup=False, highlight=False)
    if args.action == "info":
        entries = cache.entries()
        table = Table(title=f"{len(entries)} entries, {size(sum(e.bytes for e in entries))}")
        for column in ("built by", "entries", "size", "without checksums"):
            table.add_column(column, justify="left" if column == "built by" else "right")
        for kind in sorted({e.kind for e in entries}):
            group = [e for e in entries if e.kind == kind]
            table.add_row(kind, str(len(group)), size(sum(e.bytes for e in group)), str(sum(not e.verified for e in group)))
        console.print(table)
        staging = cache.staging_folders()
        leftovers = [f for f in staging if f.stale]
        console.print(f"staging: {len(staging) - len(leftovers)} build(s) running, {len(leftovers)} leftover(s) of killed builds "
                      f"({size(sum(f.bytes for f in leftovers))}; `yukti cache verify` or the next build removes them)",
                      markup=False, highlight=False)
        return 0
    if args.action == "clear":
        entries = cache.entries()
        removed = cache.clear()
        console.print(f"removed {len(removed)} entries ({size(sum(e.bytes for e in entries if e.path in set(removed)))})",
                      markup=False, highlight=False)
        running = [f for f in cache.staging_folders() if not f.stale]
        if running:
            console.print(f"left {len(running)} staging folder(s) of builds still running", markup=False, highlight=False)
        return 0
    removed, skipped = cache.verify()
    for path, problem in removed:
        console.print(f"removed entry {path}: {problem}", markup=False, highlight=False)
    for path, problem in skipped:
        console.print(f"found entry {path}: {problem}", markup=False, highlight=False)
    for folder in cache.clean_staging():
        console.print(f"removed staging leftover {folder.path} ({size(folder.bytes)}): {folder.stale}", markup=False, highlight=False)
    checked = len(cache.entries()) + len(removed)
    if removed or skipped:
        console.print(f"{len(removed) + len(skipped)} of {checked} entries were damaged or unverifiable; the next prepare rebuilds them "
                      f"(exit code {VERIFY_DAMAGE_EXIT_CODE})", markup=False, highlight=False)
        return VERIFY_DAMAGE_EXIT_CODE
    console.print(f"all {checked} entries match their checksums", markup=False, highlight=False)
    return 0


def _subcommand(sub: Any, name: str, help: str, codes: Sequence[ExitCode] = COMMON_EXIT_CODES, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its exit codes, accepting --debug after its name too."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an internal error, print the full traceback here instead of saving it to a file")
    kwargs.setdefault("description", help[:1].upper() + help[1:] + ".")
    return sub.add_parser(name, help=help, epilog=exit_codes_help(*codes), formatter_class=argparse.RawDescriptionHelpFormatter,
                          parents=[common], **kwargs)


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log each backend as it is measured and stored, and let TensorFlow, absl and torch "
                             "print their log lines and warnings (stderr)")


def _add_output(parser: argparse.ArgumentParser, *, store_help: str) -> None:
    """Where a measuring command's rows go (JSON, CSV, the store) and what it shows while it runs."""
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON ('-' for stdout)")
    parser.add_argument("--csv", metavar="PATH", help="also write the rows as CSV ('-' for stdout)")
    parser.add_argument("--no-store", action="store_true", help=store_help)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    _add_verbose(parser)


def _add_task(parser: argparse.ArgumentParser) -> None:
    from yukti.vocabulary import TASKS

    parser.add_argument("--task", choices=TASKS, help="what the outputs mean, hence the fidelity metrics "
                                                      "(default: declared by the model or inferred)")


def build_parser() -> argparse.ArgumentParser:
    from yukti.chooser import OBJECTIVES

    parser = argparse.ArgumentParser(prog="yukti", description="Run a small network fast on every backend, measured side by side.",
                                     epilog=exit_codes_help(*ExitCode), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an internal error, print the full traceback here instead of saving it to a file")
    sub = parser.add_subparsers(dest="command", required=True)
    _subcommand(sub, "backends", "list backends and whether they run here").set_defaults(func=cmd_backends)
    # Parsed by dashboard.launch (its options and Streamlit's pass through); listed here for --help.
    sub.add_parser("dashboard", help="start the Streamlit dashboard (yukti dashboard --help for options)", add_help=False)
    check = _subcommand(sub, "check", "which backends can run MODEL (no compiling)")
    check.add_argument("model", help="zoo model name or path to an .onnx file")
    check.set_defaults(func=cmd_check)
    bench = _subcommand(sub, "bench", "measure backends on a model",
                        (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.BACKEND_ERRORS))
    bench.add_argument("model", nargs="?", default="jet_dnn", help="zoo model name or .onnx path (default: jet_dnn)")
    bench.add_argument("-b", "--backends", nargs="+", help="backend names (default: every registered one)")
    bench.add_argument("--batch", nargs="+", type=POSITIVE_INT.argparse, default=[1, 1024], help="batch sizes (default: 1 1024)")
    bench.add_argument("--data", help="dataset name or table path (default: the zoo model's own test split)")
    bench.add_argument("--target", help="the label column of a --data table file (.parquet, .csv, .arff)")
    bench.add_argument("--signal", help="signal class for AUC and efficiencies (name or index)")
    _add_task(bench)
    bench.add_argument("--time-reference", action=argparse.BooleanOptionalAction, default=None,
                       help="time the reference backend (ONNX's Python evaluator, the accuracy baseline) too; "
                            "default: only when -b names it")
    bench.add_argument("--threads", type=POSITIVE_INT.argparse, default=1, help="threads per backend (default: 1)")
    bench.add_argument("-o", "--option", type=_backend_option, action="append", metavar="BACKEND.NAME=VALUE",
                       help="a backend option, repeatable: -o 'fixed.precision=ap_fixed<16,6,AP_RND,AP_SAT>' "
                            "-o hls4ml.strategy=Resource (VALUE read as JSON when it is JSON)")
    bench.add_argument("--time-budget", type=POSITIVE_FINITE.argparse, default=1.0, help="seconds of timed calls per backend and batch size")
    bench.add_argument("--min-calls", type=POSITIVE_INT.argparse, default=100, help="minimum timed calls per backend and batch size")
    bench.add_argument("--eval-samples", type=POSITIVE_INT.argparse, default=20_000, help="samples for the accuracy comparison")
    _add_output(bench, store_help="do not append the results to the local store")
    bench.set_defaults(func=cmd_bench)
    choose = _subcommand(sub, "choose", "rank backends for MODEL under constraints and name the winner",
                         (ExitCode.OK, ExitCode.NO_WINNER, ExitCode.USAGE, ExitCode.INTERNAL),
                         description="Rank backends under constraints and name the winner: the best one meeting every constraint.")
    choose.add_argument("model", nargs="?", default="jet_dnn", help="zoo model name or .onnx path (default: jet_dnn)")
    choose.add_argument("--batch", type=POSITIVE_INT.argparse, default=1, help="batch size the constraints apply to (default: 1)")
    limit = NON_NEGATIVE_LIMIT.argparse
    choose.add_argument("--max-p50-us", type=limit, help="median latency per call, microseconds")
    choose.add_argument("--max-p99-us", type=limit, help="99th-percentile latency per call, microseconds")
    choose.add_argument("--min-throughput", type=limit, help="samples per second")
    choose.add_argument("--max-accuracy-drop", type=limit, help="1 - argmax agreement with the float reference")
    choose.add_argument("--max-auc-drop", type=limit, help="reference AUC minus the backend's (labelled data only)")
    choose.add_argument("--max-prepare-s", type=limit, help="prepare (convert/compile/load) seconds, as recorded")
    choose.add_argument("--max-abs-error", type=limit, help="largest |output - reference output| (any task)")
    choose.add_argument("--max-rel-error", type=limit, help="largest relative error of a sample (regression, anomaly)")
    choose.add_argument("--max-resolution", type=limit, help="std of output - reference output (regression, anomaly)")
    choose.add_argument("-b", "--backends", nargs="+", help="candidate backends (default: every registered one but the reference)")
    choose.add_argument("--objective", default="p99", choices=list(OBJECTIVES),
                        help="how candidates meeting the constraints are ranked (default: p99)")
    choose.add_argument("--measure", default="auto", choices=["auto", "never", "always"],
                        help="auto: reuse stored results, measure what is missing; never: stored only; always: re-measure")
    choose.add_argument("--data", help="dataset name or table path (default: the zoo model's own test split)")
    choose.add_argument("--target", help="the label column of a --data table file (.parquet, .csv, .arff)")
    choose.add_argument("--signal", help="signal class for AUC (name or index)")
    _add_task(choose)
    choose.add_argument("--threads", type=POSITIVE_INT.argparse, default=1, help="threads per backend (default: 1)")
    choose.add_argument("--time-budget", type=POSITIVE_FINITE.argparse, default=1.0, help="seconds of timed calls per backend when measuring")
    choose.add_argument("--min-calls", type=POSITIVE_INT.argparse, default=100, help="minimum timed calls per backend when measuring")
    choose.add_argument("--eval-samples", type=POSITIVE_INT.argparse, default=20_000, help="samples for the accuracy comparison when measuring")
    choose.add_argument("--json", metavar="PATH", help="also write the ranked candidates as JSON ('-' for stdout only)")
    choose.add_argument("--no-store", action="store_true", help="neither read nor append the local results store")
    _add_verbose(choose)
    choose.set_defaults(func=cmd_choose)
    scan = _subcommand(sub, "scan", "fixed-point precision scan of MODEL: what each precision does to the physics",
                       (ExitCode.OK, ExitCode.NO_WINNER, ExitCode.USAGE, ExitCode.INTERNAL),
                       description="Run MODEL at every ap_fixed<W,I> of a grid on the fixed backend (bit-identical to "
                                   "hls4ml's emulation) and measure agreement, AUC, AUC drop and overflows; with "
                                   "--max-auc-drop, name the smallest precision that keeps it.")
    scan.add_argument("model", nargs="?", default="jet_dnn", help="zoo model name or .onnx path (default: jet_dnn)")
    scan.add_argument("--bits", type=_int_range, default=list(range(6, 19, 2)), help="total widths W: 6..18, 6..18:2 or 8,12,16 (default 6..18:2)")
    scan.add_argument("--int-bits", type=_int_range, default=list(range(2, 9, 2)), help="integer bits I (default 2..8:2)")
    scan.add_argument("--per-layer", action="store_true",
                      help="one configuration per width; each layer's integer bits from the float model's value ranges (profiling)")
    scan.add_argument("--margin", type=int, default=0, help="--per-layer: extra integer bits over the profiled ones")
    scan.add_argument("--precision", nargs="+", help="explicit types instead of the grid (e.g. 'ap_fixed<10,4,AP_RND,AP_SAT>')")
    scan.add_argument("--strategy", choices=["Latency", "Resource"], help="hls4ml strategy (default Latency)")
    scan.add_argument("--backend", default="fixed", help="fixed-point backend to scan on (default: fixed; hls4ml works, slowly)")
    scan.add_argument("--max-auc-drop", type=limit, help="bound: reference AUC minus the configuration's")
    scan.add_argument("--min-agreement", type=limit, help="bound: argmax agreement with the float model")
    scan.add_argument("--data", help="dataset name or table path (default: the zoo model's own test split)")
    scan.add_argument("--target", help="the label column of a --data table file (.parquet, .csv, .arff)")
    scan.add_argument("--signal", help="signal class for AUC (name or index)")
    scan.add_argument("--eval-samples", type=POSITIVE_INT.argparse, default=20_000, help="samples per configuration")
    _add_output(scan, store_help="do not keep the scan in the store")
    scan.set_defaults(func=cmd_scan)
    export = _subcommand(sub, "export", "write a backend's standalone sources for MODEL")
    export.add_argument("model", help="zoo model name or .onnx path")
    export.add_argument("--backend", default="cpp", help="backend with an export (default: cpp)")
    export.add_argument("-o", "--output", required=True, help="output folder")
    export.add_argument("--name", help="name of the files, library and symbols (default: the model's); "
                                       "two exports linked into one program need different names")
    export.add_argument("--march", help="target of the kernels' blocking and of the build, a -march= value "
                                        "(default: native, this machine; e.g. x86-64-v3 for any AVX2 machine)")
    export.set_defaults(func=cmd_export)
    _subcommand(sub, "zoo", "list the zoo models").set_defaults(func=cmd_zoo)
    _subcommand(sub, "datasets", "list the datasets").set_defaults(func=cmd_datasets)
    sweep = _subcommand(sub, "sweep", "run a grid of models x backends x batch sizes x threads x options (SPEC.toml) on Dask",
                        description="Expand SPEC.toml into cells (model x backend x batch size x threads x options x dataset)\n"
                                    "and run each as a Dask task, on a local cluster of worker processes sized to this machine\n"
                                    "or on --scheduler's cluster. The spec is checked before any cell runs. Each cell's row is\n"
                                    "stored as it finishes (sweep-NAME-CELL.parquet in the store). A cell whose worker dies or\n"
                                    "that fails is run once more, then stored with status error and the reason. The Dask\n"
                                    "dashboard link is printed first. A spec (all keys: the docstring of yukti/sweep.py):\n\n"
                                    '  name = "jets-2026"                    # default: the file name\n'
                                    '  models = ["jet_dnn", "tagger.onnx"]   # zoo names or .onnx paths\n'
                                    '  backends = ["cpp", "onnxruntime"]\n'
                                    "  batch_sizes = [1, 64, 1024]\n"
                                    "  threads = [1]\n"
                                    "  [options.cpp]                         # a list is an axis of the grid\n"
                                    '  opt_level = ["-O2", "-O3"]\n'
                                    "  [timing]                              # yukti.TimingPolicy fields\n"
                                    "  time_budget_s = 0.5")
    sweep.epilog = SWEEP_EXIT_CODES
    sweep.add_argument("spec", help="the sweep spec, a TOML file")
    sweep.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on this Dask scheduler (an address or a scheduler file) instead of a local cluster; its "
                            "workers need a cores resource: dask worker tcp://HOST:PORT --nthreads 1 --resources cores=1")
    sweep.add_argument("--workers", type=POSITIVE_INT.argparse, metavar="N",
                       help="worker processes of the local cluster (default: physical cores // the grid's largest threads)")
    sweep.add_argument("--resume", action="store_true",
                       help="skip cells already stored by this sweep (same name) with a status other than error; "
                            "cells that ended in error run again")
    sweep.add_argument("--store", metavar="DIR",
                       help="results store folder, shared by every worker (default: the results store, $YUKTI_RESULTS_DIR)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    _add_verbose(sweep)
    sweep.set_defaults(func=cmd_sweep)
    res = _subcommand(sub, "results", "show stored results (unreadable files are skipped, counted and named)")
    res.add_argument("--last", type=POSITIVE_INT.argparse, default=1, help="how many runs (default 1)")
    res.add_argument("--model", help="only this model")
    res.set_defaults(func=cmd_results)
    cache = sub.add_parser(
        "cache", help="inspect, verify or clear the artifact cache (compiled backends, trained zoo models)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="info: the cache folder ($YUKTI_CACHE_DIR), entries by backend with sizes, staging leftovers of killed "
                    "builds.\nverify: check every entry's files against their recorded sha256 and remove damaged ones "
                    "(the next prepare rebuilds them), and staging leftovers.\nclear: remove every entry and leftover.",
        epilog="exit codes:\n  0  success (verify: every entry matched its checksums)\n"
               "  5  verify only: damaged entries were found (and removed, or listed when a build held them)\n"
               "  2  usage error\n  3  internal error")
    cache.add_argument("action", choices=["info", "verify", "clear"])
    cache.set_defaults(func=cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns its exit code (ExitCode, documented in `yukti --help`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["dashboard"]:  # argparse.REMAINDER on a subparser would reject `--port 8600`
        from yukti.dashboard.launch import main as dashboard_main

        return dashboard_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error argparse has already printed (2)
        return exc.code if isinstance(exc.code, int) else ExitCode.OK if exc.code is None else ExitCode.USAGE
    if getattr(args, "signal", None) is not None and args.signal.isdigit():
        args.signal = int(args.signal)
    verbose = getattr(args, "verbose", False)
    try:
        with _quiet_frameworks(verbose), _plain_store_warnings(), _verbose_logging(verbose):
            return int(args.func(args))
    except YuktiError as exc:
        console.print(Text.assemble(("error: ", "red"), shown(str(exc))))
        return ExitCode.USAGE
    except Exception as exc:  # noqa: BLE001 - a bug, not the user's input: say so and keep the traceback
        return _internal_error(exc, debug=getattr(args, "debug", False))


def _internal_error(exc: Exception, *, debug: bool) -> int:
    text = traceback.format_exc()
    where = "traceback above"
    if debug:
        sys.stderr.write(text)
    else:
        try:
            fd, path = tempfile.mkstemp(prefix="yukti-error-", suffix=".txt")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            where = f"traceback saved to {path}"
        except OSError:
            sys.stderr.write(text)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    console.print(Text.assemble(("internal error: ", "red"), shown(f"{type(exc).__name__}: {first}")))
    console.print(f"{escape(where)} (this is a bug in Yukti or a backend; `yukti --debug ...` prints the traceback)",
                  style="dim", highlight=False)
    return ExitCode.INTERNAL


@contextlib.contextmanager
def _plain_store_warnings() -> Iterator[None]:
    """Store warnings (a skipped file) as one `warning:` line on stderr, not Python's source-line format."""
    from yukti.results import StoreWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def plain(message: Warning | str, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
            if issubclass(category, StoreWarning):
                err_console.print(Text.assemble(("warning: ", "yellow"), shown(str(message))), highlight=False)
            else:
                show(message, category, *rest, **kwargs)

        warnings.showwarning = plain
        yield


# TensorFlow's C++ logging: 3 keeps errors out too ("failed call to cuInit" on a machine without a
# GPU); a failure that matters raises in Python anyway.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
# absl's C++ log lines (`I0000 00:00:1796047743.393720 2561 port.cc:153] ...`) are written straight
# to file descriptor 2 before absl is initialised, whatever TF_CPP_MIN_LOG_LEVEL says: they are
# filtered out of the stream, with absl's note about them and TensorFlow's CPU-feature continuation.
_NATIVE_LOG_LINE = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::"
                              rb"|To enable the following instructions: )")


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """File descriptor 2 through a pipe whose lines reach the real stderr unless they are native
    framework log lines (_NATIVE_LOG_LINE). Python's own stderr output passes through unchanged."""
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no descriptor to spare: print everything rather than fail
        yield
        return

    def pump() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not _NATIVE_LOG_LINE.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="yukti-stderr-filter", daemon=True)
    thread.start()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer closes: the pump drains it and ends
        thread.join(timeout=5)
        os.close(original)


@contextlib.contextmanager
def _quiet_frameworks(verbose: bool) -> Iterator[None]:
    """Without --verbose, TensorFlow/absl log lines and the frameworks' Future/Deprecation warnings
    are not printed. The environment is set before TensorFlow is first imported (its C++ logging
    reads it then), and only where the user has not set it."""
    if verbose:
        yield
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl", "h5py", "jax")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _filtered_stderr():
            for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _verbose_logging(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("yukti: %(message)s"))
    logger = logging.getLogger("yukti")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
