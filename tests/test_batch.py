"""`modelport batch` as users run it: a subprocess, its argv, stdout, exit code and files."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelport.batch import Rows, csv_value
from modelport.errors import ModelportError
from modelport.predictions import input_key
from modelport.spec import FieldSpec
from tests.conftest import Serve
from tests.models.basic import Shapes

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = "tests/models/batched.py:Double"


def batch(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "batch", *map(str, args), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def table(path: Path) -> dict[int, dict[str, Any]]:
    """The rows of a SQLite output by row number."""
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT row, key, input, output, error, model_version FROM predictions"
        ).fetchall()
    return {
        r[0]: {
            "key": r[1],
            "input": orjson.loads(r[2]),
            "output": None if r[3] is None else orjson.loads(r[3]),
            "error": r[4],
            "model_version": r[5],
        }
        for r in found
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_jsonl_to_sqlite_with_failures_recorded_per_row(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(12)])
    with source.open("ab") as f:
        f.write(b'{"n": "many"}\nnot json\n\n{"n": 1}\n')  # bad, bad, blank, a repeat
    done = batch(DOUBLE, source, "--out", tmp_path / "out.db", "--batch-size", "4")
    assert done.returncode == 1, done.stderr  # some rows failed
    assert "15 rows: 10 predicted, 4 failed, 1 skipped" in done.stdout
    assert "row 4: ValueError: unlucky 3" in done.stdout
    assert "row 13: n: Input should be a valid integer" in done.stdout
    assert "row 14: not JSON" in done.stdout
    rows = table(tmp_path / "out.db")
    assert sorted(rows) == list(range(1, 15))  # the repeat (row 15) is row 2's input
    assert rows[3] == {
        "key": input_key({"n": 2}),
        "input": {"n": 2},
        "output": {"y": 4},
        "error": None,
        "model_version": "1",
    }
    assert rows[4]["error"] == "ValueError: unlucky 3"
    assert rows[11]["error"] == "ValueError: unlucky 10"
    assert rows[10]["output"] == {"y": 18}  # the batch of a failing row still succeeds
    assert rows[13]["output"] is None and "valid integer" in rows[13]["error"]
    again = batch(DOUBLE, source, "--out", tmp_path / "out.db")
    assert again.returncode == 0, again.stderr
    assert "15 rows: 0 predicted, 0 failed, 15 skipped" in again.stdout


def test_a_raising_predict_batch_fails_only_its_row(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(10, 20)])
    out = tmp_path / "out.jsonl"
    done = batch("tests/models/batched.py:Crashes", source, "--out", out, "--batch-size", "5")
    assert done.returncode == 1
    by_n = {r["input"]["n"]: r for r in lines(out)}
    assert len(by_n) == 10
    assert by_n[13]["error"] == "RuntimeError: thirteen"
    assert all(by_n[n]["output"] == n for n in by_n if n != 13)


def test_csv_cells_are_typed_by_the_spec(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "text,count,ratio,flag,mode,tags\n"
        'abc,2,0.25,true,slow,"[""a"", ""b""]"\n'
        "de,,1e-3,no,fast,\n"  # an empty cell: the default
        "xy,two,0.5,yes,fast,\n"  # not an integer
        "xy,1,0.5,maybe,fast,\n"  # not a boolean
        "TOOLONG,1,0.5,1,fast,\n"  # refused by the spec: pattern and length
        "ab,1,0.5,0,medium,\n"  # not a choice
    )
    out = tmp_path / "out.csv"
    done = batch("tests/models/basic.py:Shapes", source, "--out", out)
    assert done.returncode == 1, done.stderr
    with out.open(newline="") as f:
        rows = {int(r["row"]): r for r in csv.DictReader(f)}
    assert set(rows) == {1, 2, 3, 4, 5, 6}
    first = orjson.loads(rows[1]["output"])
    assert (first["text"], first["count"], first["ratio"], first["flag"]) == ("abc", 2, 0.25, True)
    assert (first["mode"], first["tags"]) == ("slow", ["a", "b"])
    second = orjson.loads(rows[2]["input"])
    assert (second["count"], second["ratio"], second["flag"]) == (1, 0.001, False)
    assert rows[3]["error"] == "row 3: count: expected an integer, got 'two'"
    assert rows[4]["error"] == "row 4: flag: expected true or false, got 'maybe'"
    assert rows[5]["error"].startswith("row 5: text:")
    assert "mode: Input should be 'fast' or 'slow'" in rows[6]["error"]
    assert all(not rows[n]["output"] for n in (3, 4, 5, 6))


def test_csv_unknown_columns_and_extra_cells_are_row_errors(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("n,colour\n1,red\n")
    rows = list(Rows(source, Shapes.spec()))
    assert rows[0].inputs is None
    assert "colour: Extra inputs are not permitted" in (rows[0].error or "")
    source.write_text("count\n1,2\n")
    (row,) = Rows(source, Shapes.spec())
    assert row.error == "row 1: more cells than the header has columns"


def test_csv_value_conversions() -> None:
    assert csv_value(FieldSpec(type="list", items=FieldSpec(type="integer")), "[1, 2]") == [1, 2]
    assert csv_value(FieldSpec(type="object"), '{"a": 1}') == {"a": 1}
    assert csv_value(FieldSpec(type="selection", choices=[1, 2]), "2") == 2
    assert csv_value(FieldSpec(type="json"), "plain text") == "plain text"
    assert csv_value(None, "kept") == "kept"
    with pytest.raises(ValueError, match="expected JSON"):
        csv_value(FieldSpec(type="list"), "a,b")


def test_parquet_inputs(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": list(range(30))}), tmp_path / "in.parquet")
    done = batch(DOUBLE, tmp_path / "in.parquet", "--out", tmp_path / "out.jsonl")
    assert done.returncode == 1  # n % 7 == 3 fails
    assert "30 rows: 26 predicted, 4 failed" in done.stdout


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ModelportError, match=r"needs pyarrow: pip install pyarrow"):
        Rows(tmp_path / "in.parquet", Shapes.spec())


def test_bad_arguments_are_clear(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"n": 1}])
    cases = [
        ((DOUBLE, tmp_path / "missing.jsonl", "--out", tmp_path / "o.db"), "no such file"),
        ((DOUBLE, source, "--out", tmp_path / "o.txt"), "cannot tell the output format"),
        ((DOUBLE, source, "--out", tmp_path / "o.db", "--batch-size", "0"), "at least 1"),
        ((source, "--out", tmp_path / "o.db"), "give the model and the input file"),
        ((source, "--out", tmp_path / "o.db", "--server", "http://x"), "--endpoint NAME"),
    ]
    for args, message in cases:
        done = batch(*args)
        assert done.returncode == 2, (args, done.stdout)
        assert message in done.stderr, (args, done.stderr)


def test_processes_share_the_rows(tmp_path: Path) -> None:
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(200)])
    out = tmp_path / "out.db"
    done = batch(DOUBLE, source, "--out", out, "--processes", "2", "--batch-size", "8")
    assert "200 rows: 171 predicted, 29 failed" in done.stdout, done.stderr
    rows = table(out)
    assert len(rows) == 200
    assert all(r["output"] == {"y": 2 * r["input"]["n"]} for r in rows.values() if not r["error"])


@pytest.mark.parametrize("suffix", [".jsonl", ".db", ".csv"])
def test_resumes_after_kill_9_with_every_row_once(tmp_path: Path, suffix: str) -> None:
    n = 600
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(n)])
    out = tmp_path / f"out{suffix}"
    trace = tmp_path / "trace.txt"
    env = {**os.environ, "MODELPORT_TEST_TRACE": str(trace), "MODELPORT_TEST_BATCH_DELAY": "0.02"}
    args = ["batch", DOUBLE, str(source), "--out", str(out), "--batch-size", "5", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "modelport", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(written(out)) < 100:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote too little in time"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    before = written(out)
    assert 100 <= len(before) < n
    computed_before = set(trace.read_text().split())
    trace.write_text("")
    again = subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        cwd=ROOT,
        env={**env, "MODELPORT_TEST_BATCH_DELAY": "0"},  # slow only so the kill came mid-run
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1, again.stderr  # n % 7 == 3 rows fail, as recorded
    after = written(out)
    counts = Counter(after)
    assert set(counts) == {input_key({"n": i}) for i in range(n)}, "a row was lost"
    assert max(counts.values()) == 1, "a row was written twice"
    recomputed = set(trace.read_text().split())
    done_before = {str(i) for i in range(n) if input_key({"n": i}) in set(before)}
    assert not recomputed & done_before, "a row written before the kill was computed again"
    assert recomputed | computed_before >= {str(i) for i in range(n)}
    assert f"{n} rows:" in again.stdout and f"{len(set(before))} skipped" in again.stdout


def written(out: Path) -> list[str]:
    """The keys of the rows in an output so far (with repeats)."""
    if not out.exists():
        return []
    if out.suffix == ".db":
        try:
            with sqlite3.connect(out) as db:
                return [r[0] for r in db.execute("SELECT key FROM predictions")]
        except sqlite3.OperationalError:
            return []  # not created yet
    text = out.read_text()
    complete = text[: text.rfind("\n") + 1]
    if out.suffix == ".csv":
        return [r["key"] for r in csv.DictReader(complete.splitlines())]
    return [orjson.loads(line)["key"] for line in complete.splitlines() if line.strip()]


def test_through_a_server_then_served_precomputed(serve: Serve, tmp_path: Path) -> None:
    store = ["--store", f"sqlite:///{tmp_path}/jobs.db", "--worker-token", "t"]
    server = serve([DOUBLE, *store]).start().wait_ready()
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(40)])
    out = tmp_path / "out.db"
    done = batch(
        "--server",
        server.url,
        "--endpoint",
        "double",
        source,
        "--out",
        out,
        "--max-in-flight",
        "4",
    )
    assert done.returncode == 1, done.stderr
    assert "40 rows: 34 predicted, 6 failed" in done.stdout
    rows = table(out)
    assert rows[6]["output"] == {"y": 10}
    assert rows[4]["error"].startswith("job ") and "ValueError: unlucky 3" in rows[4]["error"]
    server.stop()

    answering = serve(
        ["tests/models/basic.py:Add", DOUBLE, *store, "--precomputed", f"double={out}"]
    )
    answering.start().wait_ready()
    hit = httpx.post(f"{answering.url}/endpoints/double/jobs", json={"input": {"n": 5}})
    assert hit.headers["x-cache"] == "precomputed"
    assert hit.json()["output"] == {"y": 10}
    assert hit.json()["source"] == "precomputed"
    miss = httpx.post(f"{answering.url}/endpoints/double/jobs", json={"input": {"n": 501}})
    assert miss.headers["x-cache"] == "miss"
    assert miss.json()["output"] == {"y": 1002}
    failed_there = httpx.post(f"{answering.url}/endpoints/double/jobs", json={"input": {"n": 3}})
    assert failed_there.headers["x-cache"] == "miss"


def test_ctrl_c_stops_cleanly_and_the_rerun_goes_on(tmp_path: Path) -> None:
    n = 300
    source = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(n)])
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "MODELPORT_TEST_BATCH_DELAY": "0.02"}
    args = ["batch", DOUBLE, str(source), "--out", str(out), "--batch-size", "5", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "modelport", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(written(out)) < 50:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130
    assert "interrupted: run the same command again" in stderr
    assert "Traceback" not in stderr
    again = batch(*args[1:-1], env={"MODELPORT_TEST_BATCH_DELAY": "0"})
    assert f"{n} rows:" in again.stdout, again.stderr
    keys = written(out)
    assert sorted(keys) == sorted({input_key({"n": i}) for i in range(n)})
