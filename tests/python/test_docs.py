"""The README's Python quickstart and every file under examples/ run as they are."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_readme_python_quickstart_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "no Python block in the README's quickstart"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example, quiverd):
    env = dict(os.environ, QUIVER_HTTP_URL=quiverd.url, QUIVER_FLIGHT_URL=quiverd.flight_url)
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
