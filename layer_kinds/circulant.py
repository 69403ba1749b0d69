"""The diagonal-circulant kind: products of k diagonal and circulant factors
(circulant_ops.DiagonalCirculant, Araujo et al. 2018)."""

import dataclasses

import circulant_ops
from layer_kinds.base import Kind, option


@dataclasses.dataclass(frozen=True)
class CirculantKind(Kind):
    name = "circulant"
    size = "k_factor"

    k_factor: int = option(1, "k_factor", "Diagonal-circulant factors per circulant layer "
                                          "(2*k*n weights each).")
    diagonal_side: str = option(
        circulant_ops.DEFAULT_DIAGONAL_SIDE, "circulant_diagonal_side",
        "input: each factor C*D; output: D*C (the first form).",
        choices=circulant_ops.DIAGONAL_SIDES)
    expansion: str = option(
        circulant_ops.DEFAULT_EXPANSION, "circulant_expansion",
        "For more outputs than inputs: blocks (independent n x n products side by side) or pad "
        "(one product of size >= outputs).", choices=circulant_ops.EXPANSIONS)
    leaky_slope: float = option(1.0, "circulant_leaky_slope",
                                "Slope of a leaky ReLU between circulant factors (1: linear).")
    regularized: bool = option(True, "circulant_regularized",
                               "L2 penalty on the circulant and diagonal vectors too.")

    def __post_init__(self):
        if self.k_factor < 1:
            raise ValueError(f"--{self.setting_of('k_factor')} must be at least 1, got "
                             f"{self.k_factor}")
        circulant_ops.check_options(self.diagonal_side, self.expansion, self.leaky_slope,
                                    prefix="circulant_")  # as the model settings spell them

    def layer(self, units, use_bias, regularizer, bias_initializer, name):
        return circulant_ops.DiagonalCirculant(
            units, k_factors=self.k_factor, use_bias=use_bias,
            regularizer=regularizer if self.regularized else None,
            bias_initializer=bias_initializer, diagonal_side=self.diagonal_side,
            expansion=self.expansion, leaky_slope=self.leaky_slope, name=name)

    def weight_count(self, n_in, units, use_bias=True):
        return circulant_ops.weight_count(n_in, units, self.k_factor, use_bias, self.expansion)
