"""Error messages that tell the user what to do: a layer class where an instance belongs,
channels-last images, a file that is not a model; and the NeuralNet verbose line says what its
seconds count."""
import pickle

import numpy as np
import pytest

import nnc
from nnc import NeuralNetClassifier, NeuralNetRegressor, Sequential
from nnc.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU


def _data(n=40, f=4):
    rng = np.random.RandomState(0)
    X = rng.rand(n, f)
    return X, (X[:, 0] > 0.5).astype(int)


def test_layer_class_instead_of_instance_gets_a_hint():
    """layers=[Dense, ReLU] (classes, not instances) says so and suggests Dense(...)."""
    with pytest.raises(TypeError, match=r"layers\[0\] is a class, not a layer; did you mean "
                                        r"Dense\(\.\.\.\)\?"):
        Sequential([Dense, ReLU], input_shape=(4,))
    X, y = _data()
    with pytest.raises(TypeError, match=r"layers\[1\] is a class, not a layer; did you mean "
                                        r"ReLU\(\.\.\.\)\?"):
        NeuralNetClassifier(layers=[Dense(4), ReLU], max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match=r"layers\[0\] is of type int, not an nnc layer"):
        Sequential([3], input_shape=(4,))
    with pytest.raises(TypeError, match=r"layers\[0\] is the class dict, not an nnc layer"):
        NeuralNetRegressor(layers=[dict], max_epochs=1).fit(X, y)


def test_channels_last_images_get_a_transpose_hint():
    """(n, 8, 8, 1) images into a Conv2D / pooling network: nnc expects (C, H, W) samples, and
    the message says how to transpose."""
    rng = np.random.RandomState(0)
    X = rng.rand(12, 8, 8, 1)
    y = np.arange(12) % 2
    hint = (r"nnc expects \(C, H, W\) samples; for channels-last images X of shape "
            r"\(n, 8, 8, 1\) pass X\.transpose\(0, 3, 1, 2\), shape \(n, 1, 8, 8\)")
    with pytest.raises(ValueError, match="Conv2D on input .*" + hint):
        NeuralNetClassifier(layers=[Conv2D(4, 3), ReLU(), Flatten()], max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="MaxPool2D on input .*" + hint):
        Sequential([MaxPool2D(2), Flatten(), Dense(2)], loss="softmax_cross_entropy",
                   input_shape=(8, 8, 1))
    # the transposed images train
    clf = NeuralNetClassifier(layers=[Conv2D(4, 3), ReLU(), Flatten()], max_epochs=1,
                              random_state=0).fit(X.transpose(0, 3, 1, 2), y)
    assert clf.predict(X.transpose(0, 3, 1, 2)).shape == (12,)
    # a genuine (C, H, W) shape error carries no such hint
    with pytest.raises(ValueError, match=r"larger than the padded input") as info:
        Sequential([Conv2D(2, 5)], input_shape=(3, 4, 4))
    assert "transpose" not in str(info.value)


def test_non_model_files_do_not_suggest_allow_pickle(tmp_path):
    """nnc.load has no allow_pickle argument: numpy's advice to pass one is not repeated."""
    files = {"text.txt": lambda p: p.write_bytes(b"hello, not a model\n"),
             "data.pkl": lambda p: p.write_bytes(pickle.dumps({"a": 1})),
             "objects.npy": lambda p: np.save(p, np.array([{"a": 1}], dtype=object)),
             "objects.npz": lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object))}
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(ValueError, match="not a valid nnc model file") as info:
            nnc.load(path)
        assert "allow_pickle" not in str(info.value), (name, str(info.value))


def test_neural_net_verbose_line_says_seconds_since_start(capsys):
    X, y = _data()
    NeuralNetClassifier(layers=[Dense(4), ReLU()], max_epochs=2, verbose=True,
                        random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    times = [float(line.rsplit("time since start ", 1)[1][:-1]) for line in lines]
    assert 0 <= times[0] <= times[1]
