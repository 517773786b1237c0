"""Building blocks for converters that write ONNX nodes themselves, in float64."""

from __future__ import annotations

from typing import Any

import numpy as np

# TreeEnsemble, the tree operator that computes in float64, is ai.onnx.ml 5;
# skl2onnx refuses to target beyond 3, so the model's import is raised after.
ML_OPSET = 5
SKL2ONNX_ML_OPSET = 3


class Forest:
    """The attributes of one ai.onnx.ml TreeEnsemble node (opset 5), tree by tree.

    Every leaf holds one target's weight, so a tree that scores K targets is
    written K times, once per target.
    """

    def __init__(self, n_targets: int) -> None:
        self.n_targets = n_targets
        self._roots: list[int] = []
        self._nodes: dict[str, list[np.ndarray]] = {
            key: [] for key in ("feature", "split", "true", "true_leaf", "false")
        }
        self._nodes["false_leaf"] = []
        self._leaf_targets: list[np.ndarray] = []
        self._leaf_weights: list[np.ndarray] = []
        self._node_count = 0
        self._leaf_count = 0

    def add_constant(self, target: int, weight: float) -> None:
        """A tree that always answers `weight` (one split, both sides one leaf)."""
        leaf = np.array([self._leaf_count])
        self._add_leaves(target, np.array([weight], dtype=np.float64))
        self._add_nodes(
            np.array([0]), np.array([0.0]), leaf, np.array([1]), leaf, np.array([1])
        )

    def add_tree(self, tree: Any, target: int, weights: np.ndarray) -> None:
        """scikit-learn's `tree_` with `weights[node]` on its leaves for `target`."""
        left, right = tree.children_left, tree.children_right
        internal = np.flatnonzero(left >= 0)  # leaves have no children (-1)
        if internal.size == 0:
            self.add_constant(target, float(weights[0]))
            return
        leaves = np.flatnonzero(left < 0)
        index = np.full(len(left), -1)
        index[internal] = self._node_count + np.arange(len(internal))
        index[leaves] = self._leaf_count + np.arange(len(leaves))
        self._add_leaves(target, np.asarray(weights, dtype=np.float64)[leaves])
        true, false = left[internal], right[internal]
        # Node 0 is the root, and the first internal node, so it becomes the root.
        self._add_nodes(
            tree.feature[internal],
            tree.threshold[internal],
            index[true],
            (left[true] < 0).astype(np.int64),
            index[false],
            (left[false] < 0).astype(np.int64),
        )

    def _add_leaves(self, target: int, weights: np.ndarray) -> None:
        self._leaf_targets.append(np.full(len(weights), target))
        self._leaf_weights.append(weights)
        self._leaf_count += len(weights)

    def _add_nodes(self, *columns: np.ndarray) -> None:
        self._roots.append(self._node_count)
        for key, column in zip(self._nodes, columns, strict=True):
            self._nodes[key].append(np.asarray(column))
        self._node_count += len(columns[0])

    def attributes(self) -> dict[str, Any]:
        from onnx import numpy_helper

        def ints(key: str) -> list[int]:
            return np.concatenate(self._nodes[key]).astype(np.int64).tolist()

        splits = np.concatenate(self._nodes["split"]).astype(np.float64)
        return {
            "n_targets": self.n_targets,
            "aggregate_function": 1,  # SUM
            "post_transform": 0,  # NONE
            "tree_roots": self._roots,
            "nodes_featureids": ints("feature"),
            "nodes_splits": numpy_helper.from_array(splits),
            "nodes_modes": numpy_helper.from_array(
                np.zeros(len(splits), dtype=np.uint8)  # BRANCH_LEQ: x <= split
            ),
            "nodes_truenodeids": ints("true"),
            "nodes_trueleafs": ints("true_leaf"),
            "nodes_falsenodeids": ints("false"),
            "nodes_falseleafs": ints("false_leaf"),
            "leaf_targetids": np.concatenate(self._leaf_targets).tolist(),
            "leaf_weights": numpy_helper.from_array(
                np.concatenate(self._leaf_weights).astype(np.float64)
            ),
        }


class Graph:
    """Adds nodes to a skl2onnx container under unique names."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container

    def node(
        self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any
    ) -> str:
        output = output or self.scope.get_unique_variable_name(op_type.lower())
        domain = attrs.pop("op_domain", "")
        version = attrs.pop("op_version", None)
        self.container.add_node(
            op_type,
            inputs,
            [output],
            name=self.scope.get_unique_operator_name(op_type),
            op_domain=domain,
            op_version=version,
            **attrs,
        )
        return output

    def constant(self, values: Any) -> str:
        from onnx import TensorProto

        array = np.asarray(values)
        name = self.scope.get_unique_variable_name("constant")
        kind = {"U": TensorProto.STRING, "i": TensorProto.INT64}.get(
            array.dtype.kind, TensorProto.DOUBLE
        )
        content = array.ravel().tolist()
        self.container.add_initializer(name, kind, list(array.shape), content)
        return name

    def as_float32(self, name: str) -> str:
        """x rounded to float32 and back: scikit-learn's trees compare
        float32(x) <= threshold, so the twin compares exactly that."""
        from onnx import TensorProto

        rounded = self.node("Cast", [name], to=TensorProto.FLOAT)
        return self.node("Cast", [rounded], to=TensorProto.DOUBLE)

    def ensemble(self, features: str, forest: Forest) -> str:
        return self.node(
            "TreeEnsemble",
            [features],
            op_domain="ai.onnx.ml",
            op_version=SKL2ONNX_ML_OPSET,  # raised to ML_OPSET by convert()
            **forest.attributes(),
        )

    def labels(self, classes: np.ndarray, index: str, output: str) -> None:
        self.node("Gather", [self.constant(class_constant(classes)), index], output)


def class_constant(classes: np.ndarray) -> np.ndarray:
    """Classes as an ONNX tensor can hold them; the runtime maps them back."""
    if classes.dtype.kind in "OUS":
        return classes.astype(str)
    if classes.dtype.kind in "biu" or (
        classes.dtype.kind == "f" and np.all(np.mod(classes, 1) == 0)
    ):
        return classes.astype(np.int64)
    raise NotImplementedError(f"class labels of dtype {classes.dtype} are not integral")
