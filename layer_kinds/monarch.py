"""The Monarch kind: two block-diagonal factors with a stride permutation between them
(monarch_ops.Monarch, Dao et al. 2022)."""

import dataclasses

import monarch_ops
from layer_kinds.base import Kind, option


@dataclasses.dataclass(frozen=True)
class MonarchKind(Kind):
    name = "monarch"
    size = "blocks"

    blocks: int = option(0, "monarch_blocks", "Blocks of each factor of the monarch layers (0: "
                                              "about the square root of the layer's smaller "
                                              "side).")

    def __post_init__(self):
        if self.blocks < 0:
            raise ValueError(f"--{self.setting_of('blocks')} must be 0 (automatic) or more, got "
                             f"{self.blocks}")

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        return monarch_ops.Monarch(units, self.blocks, use_bias, regularizer, bias_initializer,
                                   name=name)

    def weight_count(self, n_in, units, use_bias=True):
        blocks = self.blocks or monarch_ops.default_blocks(n_in, units)
        return monarch_ops.weight_count(n_in, units, blocks, use_bias)
