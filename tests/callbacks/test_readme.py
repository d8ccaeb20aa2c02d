"""The README's "Watching and steering training" snippet runs as written (in a temporary folder)."""
import pytest

from tests._snippets import readme_snippet, run_snippet

pytest.importorskip("sklearn.callback")
pytest.importorskip("rich")


def test_watching_and_steering_snippet(tmp_path):
    out = run_snippet(readme_snippet("Watching and steering training") + "\nprint(best.n_iter_)\n",
                      tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MLPClassifier - fit" in out.stdout and "100%" in out.stdout
    n_iter, loss, val_loss, val_score, saved_n_iter = out.stdout.split()[-5:]
    assert 1 <= int(saved_n_iter) <= int(n_iter) <= 100
    assert float(val_loss) < 1.0 and float(val_score) > 0.8     # it learned the digits
    assert (tmp_path / "best.npz").stat().st_size > 0
