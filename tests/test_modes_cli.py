"""``modelport run``, ``pipe`` and ``modes`` as their users run them: subprocesses, with
argv, stdin, stdout, stderr and the exit code."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

MODELPORT = [sys.executable, "-m", "modelport"]
IRIS = "examples/iris/model.py"
ECHO = "examples/echo/model.py"
KINDS = "tests/models/modes.py:Kinds"
FLAKY = "tests/models/modes.py:Flaky"
CHATTY = "tests/models/modes.py:Chatty"
IRIS_FLAGS = ["--sepal-length", "5.1", "--sepal-width", "3.5", "--petal-length", "1.4"]


def modelport(*args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None) -> Any:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [*MODELPORT, *args],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=90,
        env={**os.environ, **(env or {})},
    )
    proc.out = proc.stdout.decode(errors="replace")  # type: ignore[attr-defined]
    proc.err = proc.stderr.decode(errors="replace")  # type: ignore[attr-defined]
    return proc


def test_run_iris_prints_compact_json_when_piped() -> None:
    proc = modelport("run", IRIS, *IRIS_FLAGS, "--petal-width", "0.2")
    assert proc.returncode == 0, proc.err
    assert proc.out.count("\n") == 1
    output = json.loads(proc.out)
    assert output["label"] == "setosa"
    assert set(output["probabilities"]) == {"setosa", "versicolor", "virginica"}


def test_run_help_lists_every_input_with_type_bounds_choices_and_default() -> None:
    proc = modelport("run", KINDS, "--help")
    assert proc.returncode == 0, proc.err
    text = " ".join(proc.out.split())
    assert (
        "--name TEXT A short name; string, 2 to 8 characters, matching ^[a-z]+$; required" in text
    )
    assert "--count INT How many (at 100%); integer, 1 <= x <= 10; default: 3" in text
    assert "--scale NUMBER float, 0 <= x <= 1; default: 0.5" in text
    assert "--loud, --no-loud boolean; default: false" in text
    assert '--color {red,green} one of "red", "green"; default: "red"' in text
    assert "--tags JSON JSON list of string, at most 3 items" in text
    assert "--note TEXT string, or null" in text
    assert "Every kind of input, returned as given." in text


def test_run_converts_every_input_type() -> None:
    proc = modelport(
        "run", KINDS, "--name", "abc", "--count", "10", "--scale", "0", "--loud",
        "--color", "green", "--tags", '["a","b"]', "--extra", '{"k": 1}', "--note", "null",
    )  # fmt: skip
    assert proc.returncode == 0, proc.err
    assert json.loads(proc.out) == {
        "name": "abc", "count": 10, "scale": 0.0, "loud": True, "color": "green",
        "tags": ["a", "b"], "extra": {"k": 1}, "note": None,
    }  # fmt: skip
    proc = modelport("run", KINDS, "--name", "abc", "--no-loud")
    assert json.loads(proc.out)["loud"] is False
    assert json.loads(proc.out)["count"] == 3  # the spec's default


def test_run_bad_input_is_exit_2_with_the_servers_messages() -> None:
    proc = modelport(
        "run", KINDS, "--name", "A", "--count", "11", "--scale", "x", "--color", "blue"
    )
    assert proc.returncode == 2
    assert proc.out == ""
    assert proc.err.strip() == (
        "modelport: error: name: String should have at least 2 characters; "
        "count: Input should be less than or equal to 10; scale: Input should be a valid "
        "number; color: Input should be 'red' or 'green'"
    )
    missing = modelport("run", IRIS, *IRIS_FLAGS)
    assert missing.returncode == 2
    assert missing.err.strip() == "modelport: error: petal_width: Field required"
    not_json = modelport("run", KINDS, "--name", "abc", "--tags", "[oops")
    assert not_json.returncode == 2
    assert "argument --tags: not valid JSON" in not_json.err
    unknown = modelport("run", KINDS, "--nmae", "abc")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --nmae" in unknown.err


def test_run_json_input_from_stdin_and_file(tmp_path: Path) -> None:
    body = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
    proc = modelport("run", IRIS, "--json", "-", stdin=json.dumps(body))
    assert proc.returncode == 0, proc.err
    assert json.loads(proc.out)["label"] == "virginica"
    path = tmp_path / "in.json"
    path.write_text(json.dumps(body))
    flagged = modelport(
        "run", IRIS, "--json", str(path), "--petal-length", "1.4", "--petal-width", "0.2"
    )
    assert flagged.returncode == 0, flagged.err
    assert json.loads(flagged.out)["label"] != "virginica"  # the flags override the file
    bad = modelport("run", IRIS, "--json", "-", stdin="[1, 2]")
    assert bad.returncode == 2
    assert "give a JSON object of inputs, got list" in bad.err


def test_run_model_failure_is_exit_1_and_debug_shows_the_traceback() -> None:
    proc = modelport("run", FLAKY, "--text", "boom", "--quiet")
    assert proc.returncode == 1
    assert proc.out == ""
    assert (
        proc.err.splitlines()[-1] == "modelport: error: the model failed: ValueError: it went boom"
    )
    assert "Traceback" not in proc.err
    fails = "tests/models/modes.py:Fails"
    plain = modelport("run", fails, "--text", "x")
    assert plain.returncode == 1
    assert plain.err == "modelport: error: the model failed: ValueError: cannot read 'x'\n"
    debug = modelport("run", fails, "--text", "x", "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.err
    assert 'raise ValueError(f"cannot read {text!r}")' in debug.err
    setup = modelport("run", "tests/models/modes.py:Broken")
    assert setup.returncode == 1
    assert setup.err.splitlines()[-1] == "modelport: error: RuntimeError: no weights"
    liar = modelport("run", "tests/models/modes.py:Liar")
    assert liar.returncode == 1
    assert "the model's output does not match the endpoint's outputs" in liar.err


def test_run_shows_progress_on_stderr_unless_quiet() -> None:
    proc = modelport("run", "tests/models/modes.py:Flaky", "--text", "hi")
    assert proc.returncode == 0, proc.err
    assert json.loads(proc.out) == {"text": "HI"}
    assert "progress: 50% halfway" in proc.err
    quiet = modelport("run", FLAKY, "--text", "hi", "--quiet")
    assert "progress" not in quiet.err


def test_run_streams_chunks_as_they_are_made(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    with subprocess.Popen(
        [*MODELPORT, "run", "tests/models/modes.py:Words", "--n", "3", "--gate", str(gate)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        seen = b""
        while seen != b"w0 w1 ":  # both arrive while the model still waits for the gate
            chunk = os.read(proc.stdout.fileno(), 100)
            assert chunk, seen
            seen += chunk
        with open(gate, "w") as fifo:
            fifo.write("go")
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
    assert seen + rest == b"w0 w1 w2 \n"


def test_run_textgen_streams_text() -> None:
    proc = modelport(
        "run", "examples/textgen/model.py", "--messages", '[{"role":"user","content":"files"}]',
        "--max-tokens", "5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.err
    words = proc.out.split()
    assert 5 <= len(words) <= 6, words  # the first chunk is two words


def test_run_target_errors() -> None:
    several = modelport("run", "tests/models/modes.py", "--text", "x")
    assert several.returncode == 2
    assert "has several models" in several.err and "--endpoint" in several.err
    picked = modelport("run", "tests/models/modes.py", "--endpoint", "liar")
    assert picked.returncode == 1  # the Liar model ran
    missing = modelport("run", "nope.py")
    assert missing.returncode == 2
    assert missing.err.strip() == "modelport: error: nope.py: no such file"
    nothing = modelport("run")
    assert nothing.returncode == 2


def test_pipe_keeps_order_and_reports_errors_in_place() -> None:
    lines = '{"text":"a"}\nnot json\n\n{"text":"boom"}\n{"txt":"x"}\n{"text":"b"}'
    proc = modelport("pipe", FLAKY, "--batch-size", "2", stdin=lines)
    assert proc.returncode == 0, proc.err
    out = [json.loads(line) for line in proc.out.splitlines()]
    assert out[0] == {"text": "A"}
    assert out[1]["index"] == 1 and out[1]["error"].startswith("not valid JSON")
    assert out[2] == {"index": 2, "error": "ValueError: it went boom"}
    assert out[3] == {"index": 3, "error": "text: Field required; txt: unknown field 'txt'"}
    assert out[4] == {"text": "B"}
    assert len(out) == 5
    assert proc.err.count("setup") == 1


def test_pipe_one_at_a_time_model_prints_to_stderr_and_fails_inputs_in_place() -> None:
    texts = ["a", "boom", "over", "b", "c"] * 300  # more than one group of lines at hand
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts) + '{"txt": 1}\n'
    proc = modelport("pipe", CHATTY, "--batch-size", "1", stdin=lines)
    assert proc.returncode == 0, proc.err
    out = [json.loads(line) for line in proc.out.splitlines()]  # only the outputs: JSON
    assert len(out) == len(texts) + 1
    for i, (text, got) in enumerate(zip(texts, out, strict=False)):
        if text == "boom":
            assert got == {"index": i, "error": "ValueError: it went boom"}
        elif text == "over":
            error = "ValueError: progress fraction must be between 0 and 1, got 2.0"
            assert got == {"index": i, "error": error}
        else:
            assert got == {"text": text.upper()}
    assert out[-1] == {
        "index": len(texts),
        "error": "text: Field required; txt: unknown field 'txt'",
    }
    assert proc.err.count("working on b\n") == 300  # what it prints goes to stderr


def test_pipe_batches_through_predict_batch() -> None:
    lines = "".join(json.dumps({"text": str(i)}) + "\n" for i in range(10))
    proc = modelport("pipe", FLAKY, "--batch-size", "4", stdin=lines)
    assert proc.returncode == 0, proc.err
    assert [json.loads(x)["text"] for x in proc.out.splitlines()] == [str(i) for i in range(10)]
    sizes = [int(line.split()[1]) for line in proc.err.splitlines() if line.startswith("batch")]
    assert sum(sizes) == 10 and max(sizes) <= 4 and proc.err.count("setup") == 1


def test_pipe_pickle(tmp_path: Path) -> None:
    data = b"".join(pickle.dumps({"text": t}) for t in ["x", "boom", "y"])
    proc = modelport("pipe", FLAKY, "--format", "pickle", stdin=data)
    assert proc.returncode == 0, proc.err
    path = tmp_path / "out.pkl"
    path.write_bytes(proc.stdout)
    outputs = []
    with path.open("rb") as f:
        while True:
            try:
                outputs.append(pickle.load(f))
            except EOFError:
                break
    assert outputs == [
        {"text": "X"},
        {"index": 1, "error": "ValueError: it went boom"},
        {"text": "Y"},
    ]
    bad = modelport("pipe", FLAKY, "--format", "pickle", stdin=b"garbage")
    assert bad.returncode == 2
    assert "not a stream of pickles" in bad.err


def test_pipe_ends_cleanly_when_stdout_closes() -> None:
    proc = subprocess.Popen(
        [*MODELPORT, "pipe", ECHO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(b'{"text": "first"}\n')
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == {"text": "first"}  # answered before EOF
    proc.stdout.close()
    with contextlib.suppress(BrokenPipeError):  # it exits, as it should, while we write
        for _ in range(10_000):
            proc.stdin.write(b'{"text": "more"}\n' * 100)
        proc.stdin.flush()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in err, err


def test_modes_lists_the_built_in_modes() -> None:
    proc = modelport("modes")
    assert proc.returncode == 0, proc.err
    names = [line.split()[0] for line in proc.out.splitlines()]
    assert names[:2] == ["serve", "worker"]
    assert {"run", "pipe", "test", "init", "endpoints", "predict", "submit", "jobs"} <= set(names)
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in proc.out.splitlines()}
    assert lines["run"] == "Run a model once on inputs given as flags; print its output."
    helped = modelport("--help")
    assert "pipe" in helped.out and "Run a model on a stream of inputs" in " ".join(
        helped.out.split()
    )


def test_each_mode_help_before_a_target_describes_that_mode() -> None:
    for mode, says, not_says in (
        ("run", "modelport run TARGET", "modelport pipe TARGET"),
        ("pipe", "one output per input on stdout", "modelport run TARGET"),
        ("test", "run it on inputs made from its spec", "modelport run TARGET"),
    ):
        proc = modelport(mode, "--help")
        text = " ".join(proc.out.split())
        assert proc.returncode == 0, proc.err
        assert text.startswith(f"usage: modelport {mode} TARGET"), text[:80]
        assert says in text and not_says not in text, (mode, text[:300])


def test_test_passes_a_good_model_and_covers_every_edge() -> None:
    proc = modelport("test", KINDS, "--count", "3", "--json")
    assert proc.returncode == 0, proc.out + proc.err
    report = json.loads(proc.out)
    assert report["passed"] is True and report["endpoint"] == "kinds"
    names = [c["name"] for c in report["cases"]]
    assert names == [
        "defaults", 'name="aa" (min_length)', 'name="aaaaaaaa" (max_length)',
        "count=1 (ge)", "count=10 (le)", "scale=0.0 (ge)", "scale=1.0 (le)",
        "loud=true", "loud=false", 'color="red"', 'color="green"',
        'tags=["a","a","a"] (max_length)', "note=null",
    ]  # fmt: skip
    assert all(len(c["seconds"]) == 3 for c in report["cases"])
    assert report["cases"][4]["input"] == {"name": "aa", "count": 10}
    text = modelport("test", IRIS)
    assert text.returncode == 0, text.out
    assert "9 cases, 0 failed" in text.out
    assert "ok petal_width=10.0 (le)" in " ".join(text.out.split())


def test_test_fails_on_a_broken_edge_a_wrong_output_and_a_failed_setup() -> None:
    picky = modelport("test", "tests/models/modes.py:Picky")
    assert picky.returncode == 1
    failed = [line for line in picky.out.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "steps=50 (le)" in failed[0]
    assert "OverflowError: too many steps" in failed[0]
    assert "3 cases, 1 failed" in picky.out
    liar = modelport("test", "tests/models/modes.py:Liar", "--json", "--count", "1")
    assert liar.returncode == 1
    (case,) = json.loads(liar.out)["cases"]
    assert case["errors"] == [
        "the model's output does not match the endpoint's outputs: output: Input should be a "
        "valid integer"
    ]
    broken = modelport("test", "tests/models/modes.py:Broken")
    assert broken.returncode == 1
    assert "FAIL setup: RuntimeError: no weights" in broken.out


PLUGIN = '''
"""A third-party mode: runs a model once on inputs given as key=value words."""

from collections.abc import Sequence

from modelport.modes.local import LocalModel, load_target


def shout(argv: Sequence[str]) -> int:
    """Run a model on key=value inputs and print its output in capitals."""
    target, *pairs = argv
    local = LocalModel(load_target(target))
    local.setup()
    inputs = local.validate(dict(pair.split("=", 1) for pair in pairs))
    (outcome,) = local.call([inputs])
    print(str(outcome.output).upper())
    return 0 if outcome.error is None else 1


def broken(argv: Sequence[str]) -> int:
    return 0
'''


def test_a_plugin_mode_is_listed_and_runs(tmp_path: Path) -> None:
    package = tmp_path / "shoutmode"
    package.mkdir()
    (package / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "shoutmode-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shoutmode\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[modelport.modes]\n"
        "shout = shoutmode:shout\n"
        "run = shoutmode:broken\n"  # a plugin cannot take a built-in name
        "missing = shoutmode.nowhere:main\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    listed = modelport("modes", env=env)
    assert listed.returncode == 0, listed.err
    lines = {line.split()[0]: line for line in listed.out.splitlines()}
    assert "Run a model on key=value inputs" in lines["shout"] and "[shoutmode]" in lines["shout"]
    assert "Run a model once on inputs given as flags" in lines["run"]
    assert "cannot load: ModuleNotFoundError" in lines["missing"]
    ran = modelport("shout", ECHO, "text=hello", env=env)
    assert ran.returncode == 0, ran.err
    assert ran.out == "{'TEXT': 'HELLO'}\n"
    assert modelport("run", ECHO, "--text", "x", env=env).out == '{"text":"x"}\n'
    assert "shout" not in modelport("modes").out


FUNCTIONS = "tests/models/functions.py"


def test_a_plain_function_is_a_model_in_every_mode(serve: Any) -> None:
    added = modelport("run", f"{FUNCTIONS}:add", "--a", "2", "--b", "3")
    assert (added.returncode, added.out) == (0, "5\n")
    bad = modelport("run", f"{FUNCTIONS}:add", "--a", "2", "--b", "9")
    assert (bad.returncode, bad.err) == (
        2,
        "modelport: error: b: Input should be less than or equal to 5\n",
    )
    helped = " ".join(modelport("run", f"{FUNCTIONS}:add", "--help").out.split())
    assert "--b INT integer, 0 <= x <= 5; default: 1" in helped and "Adds two numbers." in helped
    streamed = modelport("run", f"{FUNCTIONS}:count", "--n", "2")
    assert streamed.out == "0 1 \n"
    shouted = modelport("pipe", FUNCTIONS, stdin='{"text": "hey"}\n{"text": 1}\n')  # @endpoint only
    assert shouted.returncode == 0, shouted.err
    assert shouted.out.splitlines() == [
        '{"text":"HEY"}',
        '{"index":1,"error":"text: Input should be a valid string"}',
    ]
    tested = modelport("test", f"{FUNCTIONS}:shout")
    assert tested.returncode == 0, tested.out
    server = serve([f"{FUNCTIONS}:shout", f"{FUNCTIONS}:add", "--store", "memory://"])
    server.start().wait_ready()
    env = {"MODELPORT_URL": server.url}
    assert json.loads(modelport("predict", "shout", "--text", "hi", env=env).out) == {"text": "HI"}
    assert modelport("predict", "add", "--a", "1", env=env).out == "2\n"
    listed = json.loads(modelport("endpoints", "--json", env=env).out)
    assert {e["name"]: e["description"] for e in listed} == {
        "shout": "Shouts its text, once set up.",
        "add": "Adds two numbers.",
    }


def test_init_writes_a_model_its_toml_twin_and_a_passing_test(tmp_path: Path) -> None:
    made = modelport("init", "word_score", "--dir", str(tmp_path))
    assert made.returncode == 0, made.err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["test_word_score.py", "word_score.py", "word_score.toml"]
    bin_dir = Path(sys.executable).parent
    config = str(ROOT / "pyproject.toml")
    for check in (
        [str(bin_dir / "ruff"), "check", "--config", config, "."],
        [str(bin_dir / "ruff"), "format", "--check", "--config", config, "."],
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            # As a user's mypy sees an installed modelport: checked, its own imports silent.
            "--follow-imports=silent",
            "word_score.py",
            "test_word_score.py",
        ],
    ):
        done = subprocess.run(
            check, cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "MYPYPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_word_score.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "3 passed" in tested.stdout, tested.stdout + tested.stderr
    ran = modelport("run", str(tmp_path / "word_score.py"), "--text", "good great")
    assert ran.out == '{"score":3.0}\n'
    again = modelport("init", "word_score", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exist; --force overwrites" in again.err
    bad = modelport("init", "Bad-Name")
    assert bad.returncode == 2 and "lower-case Python module name" in bad.err


def test_a_model_file_that_fails_to_import_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken_import.py"
    path.write_text("import modelport_no_such_package\n")
    proc = modelport("run", str(path))
    assert proc.returncode == 2
    assert proc.err == (
        f"modelport: error: {path}: cannot load it: ModuleNotFoundError: No module named "
        "'modelport_no_such_package'\n"
    )
    assert "Traceback" in modelport("run", str(path), "--debug").err


def test_on_a_terminal_output_is_indented_and_progress_is_a_bar() -> None:
    pytest.importorskip("rich")  # the cli extra; without it progress is plain lines
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*MODELPORT, "run", FLAKY, "--text", "hi"],
            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, cwd=ROOT, timeout=90,
        )  # fmt: skip
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):  # EIO once everything written is read
            while chunk := os.read(leader, 4096):
                seen += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert '{\r\n  "text": "HI"\r\n}' in text, text
    assert " 50%" in text and "halfway" in text and "progress:" not in text, text
