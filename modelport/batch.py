"""``modelport batch``: predictions for a file of inputs, locally or through a server.

Inputs are JSON lines (one object of inputs per line), CSV (a header row; each cell
converted to its input's type) or Parquet (with pyarrow). Each row is validated by the
endpoint's spec and keyed by the hash of its validated input (:func:`input_key`); outputs
go to SQLite (the table ``modelport serve --precomputed`` answers from), JSON lines or CSV,
one row per distinct input with the model version and the time.

Rows are written in whole batches as they finish, so a run that is killed leaves every
row it wrote complete, and running it again skips them: none is lost and none written
twice. A row that fails (bad input, or the model raised) is recorded with its error and
the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import csv
import functools
import importlib
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import pydantic

from modelport import cli_security
from modelport.errors import ModelportError
from modelport.predictions import Prediction, TableWriter, input_key
from modelport.spec import EndpointSpec, FieldSpec, spec_from_dict

INPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_FORMATS = {
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
OUTPUT_COLUMNS = (
    "key",
    "row",
    "endpoint",
    "model_version",
    "input",
    "output",
    "error",
    "created_at",
)


@dataclass(slots=True)
class Row:
    """One input row: its number (1-based, as an editor counts lines or records), and its
    validated inputs or the reason it has none."""

    n: int
    inputs: dict[str, Any] | None
    error: str | None = None
    raw: str = ""
    key: str = ""
    """The hash of the validated inputs (of the row number and text, for a bad row)."""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = (
                input_key(self.inputs)
                if self.inputs is not None
                else "bad-" + input_key({"row": self.n, "raw": self.raw})
            )


def _format(path: Path, formats: dict[str, str], what: str, given: str | None) -> str:
    if given:
        return given
    found = formats.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(formats))
        raise ModelportError(f"{path}: cannot tell the {what} format from its name (use {known})")
    return found


class Rows:
    """Reads, converts and validates the rows of an input file."""

    def __init__(self, path: Path, spec: EndpointSpec, fmt: str | None = None) -> None:
        if not path.is_file():
            raise ModelportError(f"{path}: no such file")
        self.path = path
        self.spec = spec
        self.format = _format(path, INPUT_FORMATS, "input", fmt)
        annotation = spec.request_model.model_fields["input"].annotation
        assert isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
        self.model = annotation
        if self.format == "parquet":
            self._pyarrow()

    @staticmethod
    def _pyarrow() -> Any:
        try:
            return importlib.import_module("pyarrow.parquet")
        except ModuleNotFoundError:
            raise ModelportError("reading Parquet needs pyarrow: pip install pyarrow") from None

    def count(self) -> int:
        """How many rows the file has (for the progress bar)."""
        if self.format == "parquet":
            return int(self._pyarrow().ParquetFile(self.path).metadata.num_rows)
        with self.path.open("rb") as f:
            lines = sum(1 for line in f if line.strip())
        return max(0, lines - 1) if self.format == "csv" else lines

    CHUNK = 512
    """Rows validated in one call (a chunk with a bad row is validated again row by row)."""

    def __iter__(self) -> Iterator[Row]:
        raw_rows = {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}
        chunk: list[tuple[int, str, dict[str, Any]]] = []
        for n, raw, data, error in raw_rows[self.format]():
            if error is not None:
                yield from self._chunk(chunk)
                chunk = []
                yield Row(n, None, error, raw)
                continue
            chunk.append((n, raw, data))
            if len(chunk) >= self.CHUNK:
                yield from self._chunk(chunk)
                chunk = []
        yield from self._chunk(chunk)

    def _chunk(self, chunk: list[tuple[int, str, dict[str, Any]]]) -> Iterator[Row]:
        if not chunk:
            return
        try:
            models = self._many.validate_python([data for _, _, data in chunk])
        except pydantic.ValidationError:
            for n, raw, data in chunk:
                yield self._validated(n, raw, data)
            return
        for (n, raw, _), inputs in zip(chunk, self._many.dump_python(models), strict=True):
            yield Row(n, inputs, None, raw)

    @functools.cached_property
    def _many(self) -> pydantic.TypeAdapter[list[Any]]:
        return pydantic.TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def _validated(self, n: int, raw: str, data: dict[str, Any]) -> Row:
        try:
            inputs = self.model.model_validate(data).model_dump()
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False)
            )
            return Row(n, None, f"row {n}: {problems}", raw)
        return Row(n, inputs, None, raw)

    def _jsonl(self) -> Iterator[tuple[int, str, dict[str, Any], str | None]]:
        with self.path.open("rb") as f:
            n = 0
            for line in f:
                if not line.strip():
                    continue
                n += 1
                raw = line.decode("utf-8", "replace").strip()
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    yield n, raw, {}, f"row {n}: not JSON: {e}"
                    continue
                if isinstance(data, dict) and set(data) == {"input"}:
                    data = data["input"]
                if not isinstance(data, dict):
                    yield n, raw, {}, f"row {n}: expected a JSON object of inputs"
                    continue
                yield n, raw, data, None

    def _csv(self) -> Iterator[tuple[int, str, dict[str, Any], str | None]]:
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for n, record in enumerate(reader, start=1):
                raw = ",".join(str(v) for v in record.values())
                data: dict[str, Any] = {}
                problems = []
                for column, cell in record.items():
                    if column is None:
                        problems.append("more cells than the header has columns")
                        continue
                    if cell is None or cell == "":
                        continue  # an empty cell leaves the input to its default
                    try:
                        data[column] = csv_value(self.spec.inputs.get(column), cell)
                    except ValueError as e:
                        problems.append(f"{column}: {e}")
                if problems:
                    yield n, raw, {}, f"row {n}: " + "; ".join(problems)
                else:
                    yield n, raw, data, None

    def _parquet(self) -> Iterator[tuple[int, str, dict[str, Any], str | None]]:
        n = 0
        for batch in self._pyarrow().ParquetFile(self.path).iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                n += 1
                data = {k: v for k, v in record.items() if v is not None}
                yield n, orjson.dumps(record, default=str).decode(), data, None


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def csv_value(spec: FieldSpec | None, cell: str) -> Any:
    """A CSV cell as its input's type; a cell of an unknown column is kept as text (and the
    spec then refuses the column by name)."""
    kind = None if spec is None else spec.type
    if kind == "integer":
        try:
            return int(cell)
        except ValueError:
            raise ValueError(f"expected an integer, got {cell!r}") from None
    if kind == "float":
        try:
            return float(cell)
        except ValueError:
            raise ValueError(f"expected a number, got {cell!r}") from None
    if kind == "boolean":
        if cell.strip().lower() in _TRUE:
            return True
        if cell.strip().lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {cell!r}")
    if kind == "selection" and spec is not None and spec.choices:
        for choice in spec.choices:
            if str(choice) == cell:
                return choice
        return cell
    if kind in ("list", "object", "json", "union"):
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            if kind in ("json", "union"):
                return cell
            raise ValueError(f"expected JSON (a {kind}), got {cell!r}") from None
    return cell


class Output(Protocol):
    def done(self) -> set[str]:
        """The keys of the rows written already (by an earlier run)."""

    def write(self, rows: Sequence[Prediction]) -> None:
        """Append rows, all of them or (killed) none."""

    def close(self) -> None: ...


class _Lines:
    """An append-only text file of rows: a torn last line (the writer was killed in the
    middle of it) is cut off when the file is opened again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            with path.open("rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        self.file = path.open("a", encoding="utf-8", newline="")

    def close(self) -> None:
        self.file.close()


class JsonlOutput(_Lines):
    def done(self) -> set[str]:
        keys = set()
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    keys.add(str(orjson.loads(line)["key"]))
        return keys

    def write(self, rows: Sequence[Prediction]) -> None:
        lines = [
            orjson.dumps(
                {
                    "key": p.key,
                    "row": p.row,
                    "endpoint": p.endpoint,
                    "model_version": p.model_version,
                    "input": p.input,
                    "output": p.output,
                    "error": p.error,
                    "created_at": p.created_at,
                }
            ).decode()
            + "\n"
            for p in rows
        ]
        self.file.write("".join(lines))
        self.file.flush()


class CsvOutput(_Lines):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if self.path.stat().st_size == 0:
            csv.writer(self.file).writerow(OUTPUT_COLUMNS)
            self.file.flush()

    def done(self) -> set[str]:
        with self.path.open(newline="", encoding="utf-8") as f:
            return {record["key"] for record in csv.DictReader(f) if record.get("key")}

    def write(self, rows: Sequence[Prediction]) -> None:
        writer = csv.writer(self.file)
        for p in rows:
            writer.writerow(
                (
                    p.key,
                    p.row,
                    p.endpoint,
                    p.model_version,
                    orjson.dumps(p.input).decode(),
                    "" if p.error is not None else orjson.dumps(p.output).decode(),
                    # One record per line, so a torn last line is all a kill can leave.
                    "" if p.error is None else " ".join(p.error.splitlines()),
                    repr(p.created_at),
                )
            )
        self.file.flush()


def open_output(path: Path, fmt: str | None = None) -> Output:
    kind = _format(path, OUTPUT_FORMATS, "output", fmt)
    if path.parent and not path.parent.exists():
        raise ModelportError(f"{path}: no such directory {path.parent}")
    if kind == "sqlite":
        return TableWriter(path)
    return JsonlOutput(path) if kind == "jsonl" else CsvOutput(path)


@dataclass
class Summary:
    """What a run did."""

    rows: int = 0
    """Rows read."""
    skipped: int = 0
    """Rows already in the output (an earlier run) or repeating an earlier row's input."""
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    """The first few failures, for the summary."""

    @property
    def rate(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        lines = [
            f"{self.rows} rows: {self.computed - self.failed} predicted, {self.failed} failed,"
            f" {self.skipped} skipped (already done) in {self.seconds:.2f} s"
            f" ({self.rate:,.0f} rows/s)"
        ]
        lines += [f"  failed: {e}" for e in self.errors]
        if self.failed > len(self.errors):
            lines.append(f"  ... and {self.failed - len(self.errors)} more (see the output)")
        return "\n".join(lines)


Compute = Callable[[list[dict[str, Any]]], list[tuple[Any, str | None]]]


Progress = Callable[[int], None]
"""Told how many more rows are done."""


class _Run:
    """Feeds rows to ``compute`` in batches and writes what comes back."""

    MAX_ERRORS = 5

    def __init__(self, output: Output, spec: EndpointSpec, progress: Progress) -> None:
        self.output = output
        self.spec = spec
        self.progress = progress
        self.summary = Summary()
        self.seen = output.done()

    def plan(self, rows: Rows, batch_size: int) -> Iterator[list[Row]]:
        """Batches of the rows still to do; bad rows are recorded at once."""
        batch: list[Row] = []
        for row in rows:
            self.summary.rows += 1
            key = row.key
            if key in self.seen:
                self.summary.skipped += 1
                self.progress(1)
                continue
            self.seen.add(key)
            if row.inputs is None:
                self.record([row], [(None, row.error)])
                continue
            batch.append(row)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def record(self, rows: list[Row], results: list[tuple[Any, str | None]]) -> None:
        from modelport.worker.invoke import _JSON_OPTIONS, _encode

        version, name, now = self.spec.version, self.spec.name, time.time()
        out = []
        for row, (output, error) in zip(rows, results, strict=True):
            inputs = row.inputs if row.inputs is not None else {"raw": row.raw}
            encoded = None
            if error is None:
                try:  # encoded once, here, and written as it is
                    encoded = orjson.Fragment(
                        orjson.dumps(output, default=_encode, option=_JSON_OPTIONS)
                    )
                except (TypeError, orjson.JSONEncodeError) as e:
                    error = f"the output is not JSON-serializable: {e}"
            out.append(Prediction(row.key, row.n, name, version, inputs, encoded, error, now))
            if error is not None:
                self.summary.failed += 1
                if len(self.summary.errors) < self.MAX_ERRORS:
                    self.summary.errors.append(
                        error if error.startswith("row ") else f"row {row.n}: {error}"
                    )
        self.output.write(out)
        self.summary.computed += len(rows)
        self.progress(len(rows))


_MODEL: Any = None


def _load(target: str, endpoint: str | None) -> Any:
    from modelport.loader import load_models

    classes = load_models(target)
    if endpoint is not None:
        classes = [c for c in classes if c.endpoint_name() == endpoint]
        if not classes:
            raise ModelportError(f"{target} has no endpoint named {endpoint!r}")
    if len(classes) > 1:
        names = ", ".join(c.endpoint_name() for c in classes)
        raise ModelportError(f"{target} defines several models ({names}): give --endpoint")
    return classes[0]


def _set_up(target: str, endpoint: str | None) -> None:
    global _MODEL
    _MODEL = _load(target, endpoint)()
    _MODEL.setup()


def _predict(inputs: list[dict[str, Any]]) -> list[tuple[Any, str | None]]:
    """One batch through the model of this process; a failing batch is retried row by row,
    so only the rows at fault fail."""
    from modelport.worker.invoke import _collect, describe

    try:
        outputs = _MODEL.predict_batch(inputs)
        if not isinstance(outputs, list) or len(outputs) != len(inputs):
            got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
            raise TypeError(f"predict_batch must return a list of {len(inputs)} outputs, got {got}")
    except Exception as e:
        if len(inputs) == 1:
            return [(None, describe(e))]
        return [r for item in inputs for r in _predict([item])]
    results: list[tuple[Any, str | None]] = []
    for output in outputs:
        if isinstance(output, BaseException):
            results.append((None, describe(output)))
            continue
        try:
            results.append((_collect(output, lambda _: None), None))
        except Exception as e:
            results.append((None, describe(e)))
    return results


def run_local(
    target: str,
    source: Path,
    out: Path,
    *,
    endpoint: str | None = None,
    batch_size: int | None = None,
    processes: int = 1,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> Summary:
    """Predict every row of ``source`` with a local model into ``out``."""
    cls = _load(target, endpoint)
    spec = cls.spec()
    rows = Rows(source, spec, input_format)
    size = batch_size or max(spec.max_batch_size, 64)
    output = open_output(out, output_format)
    started = time.perf_counter()
    try:
        run = _Run(output, spec, (progress or _no_progress)(rows.count()))
        if processes <= 1:
            _set_up(target, endpoint)
            started = time.perf_counter()  # the rate is of predicting, not of setup()
            for batch in run.plan(rows, size):
                run.record(batch, _predict([r.inputs for r in batch if r.inputs is not None]))
        else:
            _in_processes(run, rows, size, processes, target, endpoint)
    finally:
        output.close()
    run.summary.seconds = time.perf_counter() - started
    return run.summary


def _in_processes(
    run: _Run, rows: Rows, size: int, processes: int, target: str, endpoint: str | None
) -> None:
    context = multiprocessing.get_context("spawn")  # a fork would copy this process's threads
    with concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=context, initializer=_set_up, initargs=(target, endpoint)
    ) as pool:
        pending: dict[concurrent.futures.Future[list[tuple[Any, str | None]]], list[Row]] = {}
        for batch in run.plan(rows, size):
            inputs = [r.inputs for r in batch if r.inputs is not None]
            pending[pool.submit(_predict, inputs)] = batch
            if len(pending) >= 2 * processes:
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    run.record(pending.pop(future), future.result())
        for future in concurrent.futures.as_completed(list(pending)):
            run.record(pending.pop(future), future.result())


async def run_remote(
    server: str,
    endpoint: str,
    source: Path,
    out: Path,
    *,
    api_key: str | None = None,
    max_in_flight: int = 32,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: Callable[[int], Progress] | None = None,
    timeout: float = 60.0,
) -> Summary:
    """Predict every row of ``source`` through a running server's queue into ``out``,
    with at most ``max_in_flight`` jobs submitted and unfinished at once."""
    from modelport.client import AsyncClient
    from modelport.errors import Overloaded, TimedOut, Unavailable, Unreachable

    async with AsyncClient(server, token=api_key, timeout=timeout) as client:
        described = await client.endpoint(endpoint)
        spec = spec_from_dict(described["spec"])
        rows = Rows(source, spec, input_format)
        output = open_output(out, output_format)
        started = time.perf_counter()
        try:
            run = _Run(output, spec, (progress or _no_progress)(rows.count()))
            queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=max_in_flight)
            finished: list[tuple[Row, tuple[Any, str | None]]] = []

            async def one(row: Row) -> tuple[Any, str | None]:
                assert row.inputs is not None
                delay = 0.5
                while True:
                    try:
                        job = await (await client.submit(endpoint, row.inputs)).wait()
                    except (Overloaded, Unavailable, Unreachable, TimedOut) as e:
                        # Busy or unreachable for now: the row waits, it is not failed.
                        await asyncio.sleep(float(getattr(e, "retry_after", None) or delay))
                        delay = min(delay * 2, 30.0)
                        continue
                    except ModelportError as e:
                        return None, e.message
                    if job.status == "succeeded":
                        return job.output, None
                    return None, f"job {job.id} {job.status}: {job.error}"

            async def submitter() -> None:
                while (row := await queue.get()) is not None:
                    finished.append((row, await one(row)))

            def flush() -> None:
                if finished:
                    batch = finished[:]
                    finished.clear()
                    run.record([r for r, _ in batch], [res for _, res in batch])

            async def flusher() -> None:
                while True:
                    await asyncio.sleep(0.25)
                    flush()

            tasks = [asyncio.create_task(submitter()) for _ in range(max_in_flight)]
            ticking = asyncio.create_task(flusher())
            try:
                for batch in run.plan(rows, 1):
                    await queue.put(batch[0])
                for _ in tasks:
                    await queue.put(None)
                await asyncio.gather(*tasks)
            finally:
                ticking.cancel()
                for task in tasks:
                    task.cancel()
            flush()
        finally:
            output.close()
        run.summary.seconds = time.perf_counter() - started
        return run.summary


def _no_progress(total: int) -> Progress:
    return lambda advance: None


def add_parser(commands: Any) -> None:
    """The ``batch`` subcommand's arguments."""
    batch = commands.add_parser(
        "batch",
        help="predict every row of a file of inputs (locally, or through a server)",
        usage="modelport batch MODEL INPUT --out OUT [options]\n"
        "       modelport batch --server URL --endpoint NAME INPUT --out OUT [options]",
        description="Predict every row of a JSON-lines, CSV or Parquet file into SQLite, JSON "
        "lines or CSV, one row per distinct input keyed by its hash. Run it again after an "
        "interruption and it skips the rows already written.",
    )
    batch.add_argument(
        "paths",
        nargs="+",
        metavar="MODEL INPUT",
        help="the model (path/to/file.py[:Class]; not with --server) and the input file",
    )
    batch.add_argument(
        "--out", required=True, type=Path, help="the output file (.db, .jsonl, .csv)"
    )
    batch.add_argument(
        "--endpoint", help="the endpoint (needed with --server, or a file of several)"
    )
    batch.add_argument("--server", help="compute through this API server's queue and workers")
    cli_security.add_api_key_options(batch)
    batch.add_argument("--batch-size", type=int, default=None, help="rows per predict_batch call")
    batch.add_argument(
        "--processes", type=int, default=1, help="model processes computing at once (local)"
    )
    batch.add_argument(
        "--max-in-flight",
        type=int,
        default=32,
        help="unfinished jobs at once on the server (default: %(default)s)",
    )
    batch.add_argument("--input-format", choices=sorted(set(INPUT_FORMATS.values())))
    batch.add_argument("--output-format", choices=sorted(set(OUTPUT_FORMATS.values())))
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``modelport batch``; exit status 1 if any row failed."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    for name in ("batch_size", "processes", "max_in_flight"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ModelportError(f"--{name.replace('_', '-')} must be at least 1")
    console = Console(stderr=True)
    bar = Bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress,
    )
    started = time.perf_counter()

    def progress(total: int) -> Progress:
        task = bar.add_task("batch", total=total, rate="")
        counted = [0]

        def advance(n: int) -> None:
            counted[0] += n
            elapsed = time.perf_counter() - started
            rate = f"{counted[0] / elapsed:,.0f} rows/s" if elapsed > 0 else ""
            bar.update(task, advance=n, rate=rate)

        return advance

    try:
        with bar:
            summary = _run(args, progress)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to go on where it stopped", file=sys.stderr)
        return 130
    print(summary.text(), file=sys.stdout)
    return 1 if summary.failed else 0


def _run(args: argparse.Namespace, progress: Callable[[int], Progress]) -> Summary:
    if args.server:
        if len(args.paths) != 1 or not args.endpoint:
            raise ModelportError("with --server, give the input file and --endpoint NAME")
        return asyncio.run(
            run_remote(
                args.server,
                args.endpoint,
                Path(args.paths[0]),
                args.out,
                api_key=cli_security.api_key(args),
                max_in_flight=args.max_in_flight,
                input_format=args.input_format,
                output_format=args.output_format,
                progress=progress,
            )
        )
    if len(args.paths) != 2:
        raise ModelportError("give the model and the input file: modelport batch MODEL INPUT")
    return run_local(
        args.paths[0],
        Path(args.paths[1]),
        args.out,
        endpoint=args.endpoint,
        batch_size=args.batch_size,
        processes=args.processes,
        input_format=args.input_format,
        output_format=args.output_format,
        progress=progress,
    )
