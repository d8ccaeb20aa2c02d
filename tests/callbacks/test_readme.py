"""The README's "Watching and steering training" snippet runs as written (in a temporary folder)."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("sklearn.callback")
pytest.importorskip("rich")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _snippet():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Watching and steering training", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_watching_and_steering_snippet(tmp_path):
    import nnc
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(nnc.__file__))]
        + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-c", _snippet() + "\nprint(best.n_iter_)\n"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "MLPClassifier - fit" in out.stdout and "100%" in out.stdout
    n_iter, loss, val_loss, val_score, saved_n_iter = out.stdout.split()[-5:]
    assert 1 <= int(saved_n_iter) <= int(n_iter) <= 100
    assert float(val_loss) < 1.0 and float(val_score) > 0.8     # it learned the digits
    assert (tmp_path / "best.npz").stat().st_size > 0
