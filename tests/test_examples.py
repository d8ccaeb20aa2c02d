"""Every script in examples/ runs in --fast --no-plot mode and prints what it promises."""
import glob
import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

import nnc
import nnc.layers
import nnc.optimizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# example -> (nnc features it needs, regexes its output must match, accuracy floor in fast mode)
SPECS = {
    "01_apples_vs_oranges.py": (
        ["Sequential", "optimizers.SGD"],
        [r"decision boundary: colour = -?\d+\.\d+ \* radius \+ -?\d+\.\d+",
         r"accuracy: (?P<acc>\d\.\d+) on \d+ fruit"], 0.9),
    "02_optimizers.py": (
        ["Sequential", "optimizers.SGD", "optimizers.AdaGrad", "optimizers.RMSprop",
         "optimizers.Adam"],
        [rf"{name}: final loss \d+\.\d+" for name in
         ("gradient descent", "momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")] +
        [r"Adam: final loss \d+\.\d+  accuracy (?P<acc>\d\.\d+)"], 0.6),
    "03_deep_mlp.py": (
        ["MLPClassifier"],
        [r"nnc\s+(?P<acc>\d\.\d+)\s+\d+\.\d+"], 0.8),
    "04_cnn.py": (
        ["NeuralNetClassifier", "layers.Conv2D", "layers.MaxPool2D", "layers.Flatten",
         "callbacks.EarlyStopping", "callbacks.LearningRateScheduler", "callbacks.ProgressLine"],
        [r"NeuralNetClassifier fit \[#+-*\] 4/4 loss \S+ val_loss \S+ val_score \S+ lr \S+ "
         r"\d+:\d\d:\d\d",
         r"kept the weights of epoch \d+ \(validation loss \d\.\d+, (stopped early|no early stop)\)",
         r"test accuracy: (?P<acc>\d\.\d+) on \d+ images", r"confusion matrix"], 0.5),
    "05_recurrent.py": (
        ["NeuralNetClassifier", "layers.LSTM", "layers.GRU"],
        [r"LSTM\(\d+\): test accuracy (?P<acc>\d\.\d+)", r"GRU\(\d+\): test accuracy \d\.\d+"],
        0.4),
    "06_own_training_loop.py": (
        ["Sequential", "check_gradients", "optimizers.Adam"],
        [r"check_gradients: max relative error \d\.\d+e[-+]\d+",
         r"epoch\s+\d+\s+loss \d+\.\d+\s+0:Dense\(32\) \|dW\| \d+\.\d+",
         r"training accuracy: (?P<acc>\d\.\d+)"], 0.8),
    "07_data_parallel.py": (
        ["distributed", "MLPClassifier"],
        [r"mpiexec -n 2 python examples/07_data_parallel\.py",
         r"test accuracy: (?P<acc>\d\.\d+) on \d+ images"], 0.8),
    "08_text_classifier.py": (
        ["NeuralNetClassifier", "MLPClassifier", "layers.Embedding", "layers.PositionalEmbedding",
         "layers.TransformerEncoderBlock"],
        [r"transformer: test accuracy (?P<acc>\d\.\d+)",
         r"bag of words \(no order\): test accuracy 0\.[3-6]\d*",
         r"'the music was great but the ending was boring': negative"], 0.9),
}


def _missing(features):
    missing = []
    for feature in features:
        obj = nnc
        for part in feature.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(f"nnc.{feature}")
    return missing


def _env():
    """The subprocess imports the same nnc as this test process."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(nnc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in
                                                        [env.get("PYTHONPATH")] if p])
    env["MPLBACKEND"] = "Agg"
    return env


def _run(script, args, cwd):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script)] + args, cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=300)
    return proc, time.perf_counter() - start


def test_every_example_is_listed():
    scripts = sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.py")))
    assert [s for s in scripts if not s.startswith("_")] == sorted(SPECS)  # _common.py: helpers


@pytest.mark.parametrize("script", sorted(SPECS))
def test_example_runs_fast_without_plot(script, tmp_path):
    features, patterns, floor = SPECS[script]
    missing = _missing(features)
    if missing:
        pytest.skip(f"{script} needs {missing}, not in nnc yet")
    proc, seconds = _run(script, ["--fast", "--no-plot"], tmp_path)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = proc.stdout
    for pattern in patterns:
        match = re.search(pattern, out)
        assert match, f"{script}: no line matching {pattern!r} in:\n{out}"
        if "acc" in match.groupdict():
            assert float(match.group("acc")) >= floor, match.group(0)
    assert "wrote" not in out and not os.listdir(tmp_path), "--no-plot wrote a file"
    assert seconds < 60, f"{script} --fast took {seconds:.0f} s"


@pytest.mark.parametrize("script", ["01_apples_vs_oranges.py", "02_optimizers.py"])
def test_example_writes_png(script, tmp_path):
    pytest.importorskip("matplotlib")
    if _missing(SPECS[script][0]):
        pytest.skip("nnc feature missing")
    out = tmp_path / "figure.png"
    proc, _ = _run(script, ["--fast", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    with open(out, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def _import_example(script):
    spec = importlib.util.spec_from_file_location(f"nnc_example_{script[:2]}",
                                                  os.path.join(EXAMPLES, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_run_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(EXAMPLES)  # as `python examples/NN.py` does: finds _common.py
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    module = _import_example("01_apples_vs_oranges.py")
    assert module.main(["--fast"]) == 0
    out = capsys.readouterr().out
    assert "matplotlib is not installed: no plot" in out
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("script", sorted(SPECS))
def test_example_structure(script):
    with open(os.path.join(EXAMPLES, script)) as fh:
        source = fh.read()
    if "from _common import" in source:  # the shared command line and figure helpers
        with open(os.path.join(EXAMPLES, "_common.py")) as fh:
            source += fh.read()
    assert source.startswith('"""'), "module docstring first"
    assert "def main(argv=None):" in source
    assert 'if __name__ == "__main__":\n    sys.exit(main())' in source
    assert '"--fast"' in source and '"--no-plot"' in source
    assert 'matplotlib.use("Agg")' in source and "plt.show" not in source
