"""Every public estimator, layer and optimizer documents exactly its ``__init__`` parameters, in
signature order, under a numpydoc "Parameters" heading (and nothing after "Attributes" or any
other heading poses as a parameter).  A small numpydoc-section parser does the check; when
numpydoc is installed its own parser must agree."""
import inspect
import re

import pytest

import nnc
import nnc.callbacks
import nnc.layers
import nnc.optimizers
from nnc.callbacks import Callback
from nnc.layers import Layer
from nnc.optimizers import Optimizer

#: numpydoc's section order (the ones a class docstring may use)
SECTION_ORDER = ["Parameters", "Attributes", "Methods", "See Also", "Notes", "References",
                 "Examples"]
_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*(?::|$)")


def _public_classes():
    classes = [nnc.Sequential, nnc.MLPClassifier, nnc.MLPRegressor, nnc.NeuralNetClassifier,
               nnc.NeuralNetRegressor]
    for module, base in ((nnc.layers, Layer), (nnc.optimizers, Optimizer),
                         (nnc.callbacks, Callback)):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, base):
                classes.append(obj)
    return classes


def _sections(doc):
    """{heading: [lines]} and the headings in order, for a numpydoc docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    sections, order, current, i = {}, [], None, 0
    while i < len(lines):
        head, under = lines[i].strip(), lines[i + 1].strip() if i + 1 < len(lines) else ""
        if head and not lines[i].startswith(" ") and len(under) >= 3 and set(under) == {"-"}:
            current = head
            order.append(head)
            sections[head] = []
            i += 2
            continue
        if current is not None:
            sections[current].append(lines[i])
        i += 1
    return sections, order


def _entries(section_lines):
    """Names documented in one section: lines at the section's own indentation, split on ','."""
    names = []
    for line in section_lines:
        if not line.strip() or line.startswith(" "):
            continue
        m = _ENTRY.match(line)
        assert m, f"not a numpydoc entry: {line!r}"
        names += [n.strip().lstrip("*") for n in m.group(1).split(",")]
    return names


def _signature_params(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]   # drop self
    return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_parameters_documented_in_signature_order(cls):
    sections, order = _sections(cls.__doc__)
    expected = _signature_params(cls)
    documented = _entries(sections.get("Parameters", []))
    assert documented == expected, (
        f"{cls.__name__}: Parameters section lists {documented}, __init__ takes {expected}")
    assert order == [s for s in SECTION_ORDER if s in order], f"{cls.__name__}: {order}"
    for heading, body in sections.items():
        if heading != "Parameters":
            misplaced = set(_entries(body)) & set(expected) if heading == "Attributes" else set()
            assert not misplaced, f"{cls.__name__}: {misplaced} documented under {heading}"


def test_parser_catches_a_parameter_under_attributes():
    """The check above can fail: a docstring with a parameter appended after Attributes."""
    doc = """Summary.

    Parameters
    ----------
    a : int

    Attributes
    ----------
    a_ : int
    b : float
        The second parameter, misplaced.
    """
    sections, _ = _sections(doc)
    assert _entries(sections["Parameters"]) == ["a"]
    assert _entries(sections["Attributes"]) == ["a_", "b"]


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__name__)
def test_numpydoc_agrees(cls):
    docscrape = pytest.importorskip("numpydoc.docscrape")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # numpydoc warns on unknown or malformed sections
        doc = docscrape.ClassDoc(cls, doc=cls.__doc__, config={"show_class_members": False})
    names = [n.strip().lstrip("*") for p in doc["Parameters"] for n in p.name.split(",")]
    assert names == _signature_params(cls)
