"""The low-rank kind: a Dense layer whose [n_in, units] kernel is U V of rank r."""

import dataclasses

import keras
import numpy as np

from layer_kinds.base import Kind, option


@dataclasses.dataclass(frozen=True)
class LowRankKind(Kind):
    name = "low_rank"
    size = "rank"

    rank: int = option(0, "low_rank", "Rank r of the low_rank layers (U V: (inputs + outputs) "
                                      "* r weights); BottleneckModel makes a classifier that "
                                      "compact_layers leaves dense low rank when r > 0.")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"a low_rank layer needs --{self.setting_of('rank')} of at least 1, "
                             f"got {self.rank}")

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        return LowRank(units, self.rank, use_bias, regularizer, bias_initializer, name=name)

    def weight_count(self, n_in, units, use_bias=True):
        return (n_in + units) * self.rank + (units if use_bias else 0)


@keras.saving.register_keras_serializable(package="yt8m")
class LowRank(keras.layers.Layer):
    """(n_in + units) * rank weights instead of n_in * units: `down` [n_in, rank] then `up`
    [rank, units] (with the bias)."""

    def __init__(self, units, rank, use_bias=True, regularizer=None, bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.units, self.rank = units, rank
        self.down = keras.layers.Dense(rank, use_bias=False, kernel_regularizer=regularizer,
                                       name="u")
        self.up = keras.layers.Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                                     bias_initializer=bias_initializer, name="v")

    structure_kind = "low_rank"

    def call(self, x):
        return self.up(self.down(x))

    def structured_variables(self):
        return [self.down.kernel, self.up.kernel]

    def dense_weight_count(self):
        return int(self.down.kernel.shape[0]) * self.units + (
            self.units if self.up.use_bias else 0)

    def dense_matrix(self):
        return (np.asarray(self.down.kernel.numpy(), np.float64)
                @ np.asarray(self.up.kernel.numpy(), np.float64)).T
