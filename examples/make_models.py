"""Build the example model repository: ``python examples/make_models.py [OUT_DIR]``.

Models are trained on data sets bundled with scikit-learn (nothing is downloaded):

- ``iris``: logistic regression on iris, as ONNX (skl2onnx), with a config.yaml that names its
  outputs ``label`` and ``probabilities``;
- ``iris-skops``: the same estimator as a scikit-learn ``.skops`` file;
- ``diabetes``: a ridge regression on the diabetes data set, as ``.skops``;
- ``iris-ensemble``: an inference graph (``graph.yaml``) averaging the probabilities of ``iris``
  and ``iris-skops`` and taking a majority vote of their labels;
- one or more models per other format, each built by a module in ``examples/formats/`` with the
  format's own library (XGBoost, LightGBM, PMML, PFA, TensorFlow, TorchScript, Python code). A
  format whose library is not installed is skipped, and the script says so.

Needs the ``examples`` extra: ``pip install -e '.[examples]'``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

DEFAULT_OUT = Path(__file__).parent / "models"
FORMATS = Path(__file__).parent / "formats"

IRIS_CONFIG = """\
# The ONNX graph names its outputs output_label / output_probability; publish friendlier names.
signature:
  outputs:
    - name: label
    - name: probabilities
metadata:
  description: Logistic regression on the iris data set (sepal/petal length/width in cm)
  classes: [setosa, versicolor, virginica]
"""

IRIS_ENSEMBLE = """\
# The two iris classifiers (ONNX and scikit-learn) together, served as the model "iris-ensemble".
inputs:
  - {name: input, datatype: FP32, shape: [-1, 4]}
outputs:
  - {name: probabilities, from: vote.probabilities}
  - {name: label, from: majority.label}
nodes:
  - {name: onnx, kind: model, model: iris, inputs: {input: input}}
  - {name: sklearn, kind: model, model: iris-skops, inputs: {input: input}}   # takes FP64: FP32 converts
  - {name: vote, kind: combiner, combine: mean, inputs: [onnx.probabilities, sklearn.probabilities]}
  - {name: majority, kind: combiner, combine: majority_vote, inputs: [onnx.label, sklearn.label]}
"""


def build(out: Path = DEFAULT_OUT) -> Path:
    """Write the repository under ``out`` (created if needed) and return it."""
    import skops.io as sio
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge

    iris = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    onnx_model = to_onnx(
        classifier,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=17,
    )
    _write(out / "iris" / "1" / "model.onnx", onnx_model.SerializeToString())
    _write(out / "iris" / "config.yaml", IRIS_CONFIG.encode())
    # a sample request the version must answer before it is READY (see README, "Warmup")
    sample = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
    _write(out / "iris" / "1" / "warmup" / "000.json", json.dumps(sample).encode())

    (out / "iris-skops" / "1").mkdir(parents=True, exist_ok=True)
    sio.dump(classifier, out / "iris-skops" / "1" / "model.skops")
    _write(out / "iris-ensemble" / "graph.yaml", IRIS_ENSEMBLE.encode())

    diabetes = load_diabetes()
    regressor = Ridge(alpha=0.1).fit(diabetes.data, diabetes.target)
    (out / "diabetes" / "1").mkdir(parents=True, exist_ok=True)
    sio.dump(regressor, out / "diabetes" / "1" / "model.skops")
    for module in format_modules():
        missing = [name for name in module.REQUIRES if importlib.util.find_spec(name) is None]
        if missing:
            print(f"skipped {module.__name__}: {', '.join(missing)} not installed", file=sys.stderr)
            continue
        module.build(out)
    return out


def format_modules() -> list[ModuleType]:
    """The modules of ``examples/formats``: each has ``REQUIRES`` (importable names) and ``build(out)``."""
    modules = []
    for path in sorted(FORMATS.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"formats.{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        sys.exit("usage: python examples/make_models.py [OUT_DIR]   (default: examples/models)")
    target = build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
    print(f"example models written to {target}")
