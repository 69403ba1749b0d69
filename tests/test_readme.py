"""The README's commands run as written: every ```sh block, in order, with /tmp/ moved to a
temporary folder, except the blocks that open with "# not run by the tests: <why>"."""

import json
import os
import re
import subprocess
import sys

import pytest

from utils import REPO_DIR

pytestmark = pytest.mark.slow  # TensorFlow processes
NOT_RUN = "# not run by the tests"


def readme_blocks():
    with open(os.path.join(REPO_DIR, "README.md")) as f:
        return re.findall(r"^```sh\n(.*?)^```", f.read(), re.M | re.S)


def test_every_block_is_run_or_says_why_not():
    blocks = readme_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        if block.startswith(NOT_RUN):
            assert re.match(re.escape(NOT_RUN) + r"[^:\n]*: \S", block), block.splitlines()[0]


def test_the_readme_commands_run(tmp_path):
    runnable = [b for b in readme_blocks() if not b.startswith(NOT_RUN)]
    assert len(runnable) >= 2
    for block in runnable:
        # /tmp/ first: the interpreter's own path may be under /tmp (a clone there)
        script = block.replace("/tmp/", f"{tmp_path}/").replace(".venv/bin/python",
                                                                sys.executable)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO_DIR,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "yt8m_ensemble.csv").read_text().startswith("VideoId,LabelConfidencePairs")


def test_the_flag_table_gives_the_defaults_that_train_py_has():
    with open(os.path.join(REPO_DIR, "README.md")) as f:
        text = f.read()
    table = text[text.index("| flag | default | flag | default |"):]
    table = table[:table.index("\n\n")]
    pairs = []  # (flag names, their default values as written)
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for names, default in zip(cells[0::2], cells[1::2]):
            flags = re.findall(r"`--(\w+)`", names)
            written = re.sub(r" \(.*", "", default)  # what follows in parentheses explains it
            values = [v.strip("`") for v in re.split(r"`?, `?", written)]
            if "eval" not in names and not written.startswith("("):
                pairs.append((flags, values))
    assert len(pairs) >= 15
    names = sorted({n for flags, _ in pairs for n in flags})
    # a flag without a default of its own (None) takes what a run records: model_flags.json's
    done = subprocess.run([sys.executable, "-c", (
        "import json, sys, train, model_flags\nfrom absl import flags\n"
        "recorded = model_flags.flat(model_flags.describe(flags.FLAGS['model'].default))\n"
        "print(json.dumps({n: recorded.get(n) if flags.FLAGS[n].default is None else "
        "flags.FLAGS[n].default for n in sys.argv[1:]}))"), *names],
        cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    defaults = json.loads(done.stdout.splitlines()[-1])

    def as_written(value):
        if isinstance(value, bool) or value is None:
            return {True: "true", False: "false", None: "none"}[value]
        if isinstance(value, (int, float)):
            return f"{value:,}" if isinstance(value, int) else f"{value:g}"
        return str(value)

    for flags, values in pairs:
        if len(values) != len(flags) or any(v.startswith("all ") for v in values):
            continue  # a default in words: "all GPUs"
        for flag, value in zip(flags, values):
            expected = as_written(defaults[flag])
            assert value.replace(",", "") == expected.replace(",", "") or \
                (value[0].isdigit() and float(value.replace(",", "")) == float(expected.replace(
                    ",", ""))), (flag, value, expected)
