"""The dense kind: keras.layers.Dense with the kinds' protocol."""

import dataclasses

import keras
import numpy as np

from layer_kinds.base import Kind


@dataclasses.dataclass(frozen=True)
class DenseKind(Kind):
    name = "dense"

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        return Dense(units, use_bias=use_bias, kernel_regularizer=regularizer,
                     bias_initializer=bias_initializer, name=name)

    def weight_count(self, n_in, units, use_bias=True):
        return n_in * units + (units if use_bias else 0)


@keras.saving.register_keras_serializable(package="yt8m")
class Dense(keras.layers.Dense):
    """keras.layers.Dense with the protocol of the structured kinds."""

    structure_kind = "dense"

    def dense_weight_count(self):
        return int(self.kernel.shape[0]) * self.units + (self.units if self.use_bias else 0)

    def structured_variables(self):
        return []

    def dense_matrix(self):
        return np.asarray(self.kernel.numpy(), np.float64).T
