"""The kinds of linear layer a model can put at each of its places, by name.

`KINDS` is the registry that --compact_layers, the model settings (and so train.py's flags and
--help), the learning-rate scales, the model summary and the experiments read. A kind is one
file of this folder (a frozen dataclass of its options with its layer and weight count:
layer_kinds.base) and one line of the registry below.
"""

from layer_kinds.base import Kind, option
from layer_kinds.btt import BttKind
from layer_kinds.circulant import CirculantKind
from layer_kinds.dense import DenseKind
from layer_kinds.low_rank import LowRankKind
from layer_kinds.monarch import MonarchKind

__all__ = ["Kind", "option", "KINDS", "STRUCTURED", "SIZED", "get", "kind_of", "is_structured"]

KINDS = {kind.name: kind for kind in (DenseKind, CirculantKind, LowRankKind, MonarchKind,
                                      BttKind)}
# The kinds that keep fewer weights than their matrix: each may have its own learning rate.
STRUCTURED = tuple(name for name in KINDS if name != "dense")
# {kind: the model setting that sizes it} ('k_factor' for circulant), of the kinds with a size.
SIZED = {name: kind.setting_of(kind.size) for name, kind in KINDS.items() if kind.size}


def get(name):
    """The kind class of that name (ValueError naming the valid ones)."""
    if name not in KINDS:
        raise ValueError(f"unknown layer kind {name!r}; valid: {', '.join(KINDS)}")
    return KINDS[name]


def kind_of(layer):
    """The kind of a layer (its `structure_kind`; "dense" for any layer without one)."""
    return getattr(layer, "structure_kind", "dense")


def is_structured(layer):
    """A layer of a kind other than dense (it keeps fewer weights than its matrix)."""
    return kind_of(layer) != "dense"
