"""TorchScript example: ``torch-iris``, a linear layer and a softmax scripted with ``torch.jit.script``.

The layer holds the weights of a scikit-learn ``LogisticRegression`` fitted on iris, so its
probabilities are the estimator's ``predict_proba`` (in FP32). ``forward`` returns a tuple
``(label, probabilities)``; TorchScript files carry no usable signature, so config.yaml declares
it, in that order.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

REQUIRES = ("torch", "sklearn")

CONFIG = """\
# TorchScript files carry no usable signature: inputs in forward()'s order, outputs in the order
# of the tuple it returns
signature:
  inputs:
    - {name: input, datatype: FP32, shape: [-1, 4]}
  outputs:
    - {name: label, datatype: INT64, shape: [-1]}
    - {name: probabilities, datatype: FP32, shape: [-1, 3]}
metadata:
  description: Logistic regression on iris as a TorchScript module (linear layer + softmax)
  classes: [setosa, versicolor, virginica]
"""


def build(out: Path) -> None:
    import torch
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    classifier = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)
    module = _iris_module(torch)
    with torch.no_grad():
        module.linear.weight.copy_(torch.from_numpy(classifier.coef_))
        module.linear.bias.copy_(torch.from_numpy(classifier.intercept_))
    path = out / "torch-iris" / "1" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # PyTorch marks TorchScript deprecated in favour of torch.export; this example is about
        # serving the TorchScript files that exist
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module.eval()), str(path))
    (out / "torch-iris" / "config.yaml").write_text(CONFIG)


def _iris_module(torch: Any) -> Any:
    class IrisNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probabilities = torch.softmax(self.linear(x), dim=1)
            return torch.argmax(probabilities, dim=1), probabilities

    return IrisNet()
