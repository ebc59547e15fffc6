"""Progress that shows (spinners and the calibration bar on a terminal, one line per step in a log, nothing when
quiet) and where the time goes (`--profile`, report.json's `profile`)."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path

import edgeopt
from edgeopt.profiling import Profile, recording, step

ASSETS = Path(edgeopt.__file__).parent / "assets"
MODEL = ASSETS / "fashion_mnist_cnn.onnx"
IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
COMPRESS = [sys.executable, "-m", "edgeopt.cli", "compress", str(MODEL), "--int8", "--calib", str(IMAGES),
            "--latency-runs", "5", "--warmup-runs", "1"]
STEPS = ["load TensorFlow", "import", "data", "parity", "quantize.ptq", "TFLite converter", "calibration",
         "compaction", "convert.tflite (fp32 reference)", "fidelity", "analysis", "latency", "delegates",
         "report files", "plot"]  # with --ptq-repair none; the repair adds its own step (PTQ repair)


def run_on_terminal(cmd: list[str]) -> tuple[int, str]:
    """Run ``cmd`` with stdin/stdout/stderr on a pseudo-terminal; return its exit code and everything it drew."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait(timeout=600)
    reader.join(timeout=10)
    os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_shows_a_spinner_per_step_and_the_calibration_bar(tmp_path):
    code, drawn = run_on_terminal(COMPRESS + ["-o", str(tmp_path / "m.tflite")])
    assert code == 0, drawn[-3000:]
    # 205 of the 256 subset images calibrate; 51 are held back (--holdout 0.2)
    for text in ("loading TensorFlow", "importing fashion_mnist_cnn.onnx",
                 "reading fashion_mnist_subset-images-idx3-ubyte.gz", "checking parity with onnxruntime",
                 "PTQ repair: the converter's INT8 model", "PTQ repair: trying rounding",
                 "PTQ repair: choosing activation ranges", "calibrating on 205 samples",
                 "converting to fp32 .tflite", "measuring fidelity on held-back samples",
                 "timing fp32 and int8 interleaved", "analysing delegate compatibility"):
        assert text in drawn, text
    assert "━" in drawn  # the bar itself, drawn while the converter's native output is muted
    assert "Created TensorFlow Lite XNNPACK delegate" not in drawn and "Traceback" not in drawn


def test_log_gets_one_line_per_step_and_quiet_api_prints_nothing(tmp_path, capfd):
    res = subprocess.run(COMPRESS + ["--ptq-repair", "none", "-o", str(tmp_path / "m.tflite")], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[:4] == ["loading TensorFlow", "importing fashion_mnist_cnn.onnx",
                         "reading fashion_mnist_subset-images-idx3-ubyte.gz", "checking parity with onnxruntime"]
    assert lines.count("calibrating on 205 samples") == 1 and lines.count("analysing delegate compatibility") == 1
    assert "━" not in res.stderr  # no bar redraws in a log
    capfd.readouterr()
    edgeopt.compress(MODEL, precision="int8", calib=IMAGES, output=tmp_path / "q.tflite",
                     report={"latency_runs": 5, "warmup_runs": 1})
    assert capfd.readouterr().err == ""


def test_native_stderr_is_muted_while_python_stderr_still_shows(tmp_path):
    script = ("import os, sys\n"
              "from edgeopt._quiet import quiet_native_stderr\n"
              "with quiet_native_stderr():\n"
              "    os.write(2, b'native chatter\\n')\n"
              "    sys.stderr.write('edgeopt progress\\n')\n"
              "os.write(2, b'native after\\n')\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert res.stderr.splitlines() == ["edgeopt progress", "native after"]


def test_profile_counts_nested_steps_once_and_adds_repeats():
    with recording() as prof:
        with step("import"):
            time.sleep(0.05)
            with step("parity"):
                time.sleep(0.10)
        with step("import"):
            time.sleep(0.05)
    rows = dict(prof.rows())
    assert list(rows) == ["import", "parity"]
    assert 0.09 <= rows["import"] < 0.14 and 0.09 <= rows["parity"] < 0.14
    doc = prof.to_dict()
    assert abs(sum(s["seconds"] for s in doc["steps"]) + doc["other_seconds"] - doc["total_seconds"]) < 0.005
    with step("nothing records this"):  # no profile: a no-op
        pass


def test_abandoned_step_inside_a_generator_closes_with_its_parent():
    prof = Profile()

    def samples():
        entry = prof.enter("calibration")
        try:
            yield 1
            yield 2
        finally:
            prof.leave(entry)

    outer = prof.enter("quantize.ptq")
    gen = samples()
    next(gen)
    time.sleep(0.02)
    prof.leave(outer)  # the converter stopped early: the calibration step ends with the conversion
    gen.close()        # ... and closing the generator later changes nothing
    rows = dict(prof.rows())
    assert rows["calibration"] >= 0.02 and rows["quantize.ptq"] < 0.01


def test_profile_flag_prints_every_step_and_report_json_records_them(tmp_path):
    out = tmp_path / "m.tflite"
    t0 = time.perf_counter()
    res = subprocess.run(COMPRESS + ["--ptq-repair", "none", "--profile", "-o", str(out)], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    table = res.stdout[res.stdout.index("where the time went"):]
    for name in STEPS + ["other (hashing, lineage, writing the output)", "total"]:
        assert f"│ {name} " in table, name
    rep = json.loads(out.with_name("m.report.json").read_text())
    prof = rep["profile"]
    assert [s["step"] for s in prof["steps"]] == STEPS
    seconds = {s["step"]: s["seconds"] for s in prof["steps"]}
    assert seconds["calibration"] > 0 and seconds["quantize.ptq"] > 0 and seconds["load TensorFlow"] > 0.5
    assert abs(sum(seconds.values()) + prof["other_seconds"] - prof["total_seconds"]) < 0.01
    assert prof["total_seconds"] < wall
    assert "## Where the time went" in out.with_name("m.report.md").read_text()
