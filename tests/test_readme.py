"""The README's commands run as written: every ```sh block, in order, with /tmp/ moved to a
temporary folder, except the blocks that open with "# not run by the tests: <why>"."""

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
