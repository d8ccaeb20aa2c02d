"""The README's "Deploying a model" snippet runs exactly as written (in a temporary folder)."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _snippet():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Deploying a model", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_deploying_a_model_snippet(tmp_path):
    import nnc
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(nnc.__file__))]
        + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", _snippet()],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    labels = re.findall(r"\[([0-9 ]+)\]", out.stdout)
    assert len(labels) == 2 and labels[0].split() == labels[1].split(), out.stdout
    assert float(out.stdout.split()[-1]) < 1e-10          # float64 model: probabilities agree
    assert (tmp_path / "digits.onnx").stat().st_size > 0
