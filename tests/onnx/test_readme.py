"""The README's "Deploying a model" snippet runs exactly as written (in a temporary folder)."""
import re

import pytest

from tests._snippets import readme_snippet, run_snippet

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")


def test_deploying_a_model_snippet(tmp_path):
    out = run_snippet(readme_snippet("Deploying a model"), tmp_path)
    assert out.returncode == 0, out.stderr
    labels = re.findall(r"\[([0-9 ]+)\]", out.stdout)
    assert len(labels) == 2 and labels[0].split() == labels[1].split(), out.stdout
    assert float(out.stdout.split()[-1]) < 1e-10          # float64 model: probabilities agree
    assert (tmp_path / "digits.onnx").stat().st_size > 0
