"""Diagonal-circulant layers: a dense n_out x n_in matrix replaced by A = D1 C1 D2 C2 ... Dk Ck.

Araujo, Negrevergne, Chevaleyre & Atif, "Training compact deep learning models for video
classification using circulant matrices" (ECCV 2018 workshops); the decomposition of any matrix
into such a product: Huhtanen & Peramaki, "Factoring matrices into the product of circulant and
diagonal matrices" (2015).

Definitions (the tests hold the code to them):

* `circ(c)` is the n x n matrix with first column c, `C[i, j] = c[(i - j) mod n]`, so `C x` is the
  circular convolution of c and x, computed as `irfft(rfft(c) * rfft(x), n)`.
* `D_i = diag(d_i)`. A is applied to x from the right: Ck first, then Dk, ..., C1, D1.
  With `diagonal_side="input"` (the 2018 paper's released code) each factor is `C_i D_i`
  instead, so A = C1 D1 ... Ck Dk: the diagonal scales the factor's *input* (a random-sign
  mixing before the convolution, as in Cheng et al. 2015). Followed by batch norm, an
  output-side diagonal at k=1 is nearly redundant with the batch norm's scale; an input-side
  one is not.
* Row vectors x [..., n_in] are padded with zeros to n, multiplied by A, and the first n_out
  outputs kept: `y = x @ A[:n_out, :n_in].T (+ bias)`.
* Expanding layers (n_out > n_in): `expansion="pad"` makes one product of size n >= n_out;
  `expansion="blocks"` (the 2018 code) makes ceil(n_out / n) independent products of size
  n >= n_in, all applied to the same input, their outputs concatenated.
* `leaky_slope` < 1 puts a leaky ReLU between consecutive factors (Araujo et al., ECAI 2020,
  "Understanding and training deep diagonal circulant neural networks"); 1 keeps A linear.

An n x n factor pair keeps 2n weights instead of n**2 and costs O(n log n). n is the smallest size
at least max(n_in, n_out) (one block) or n_in (blocks) whose prime factors are all 2, 3, 5 or 7
(`fft_size`): FFT libraries
(DUCC on CPU, cuFFT on GPU) are fastest on such sizes. Measured with one rfft/irfft pair of
128 rows on the 2-core CPU: n = 19,310 = 2*5*1931 took 27 ms, the next such size 19,440 took
12 ms.
"""

import math

import keras
import numpy as np
import tensorflow as tf

INITIALIZERS = ("fan_in", "araujo2020", "araujo2018", "cheng2015")
DEFAULT_INITIALIZER = "araujo2020"
DIAGONAL_SIDES = ("input", "output")
EXPANSIONS = ("blocks", "pad")
# The defaults (EXPERIMENTS.md: the input-side diagonal is worth 0.02-0.03 GAP), and the first
# form, which layers and model_flags.json saved without these options keep.
DEFAULT_DIAGONAL_SIDE, DEFAULT_EXPANSION = "input", "blocks"
FIRST_DIAGONAL_SIDE, FIRST_EXPANSION = "output", "pad"


def check_options(diagonal_side=DEFAULT_DIAGONAL_SIDE, expansion=DEFAULT_EXPANSION,
                  leaky_slope=1.0, prefix=""):
    """Raise ValueError naming the first invalid option (`prefix`: how the caller spells them)."""
    for name, value, valid in (("diagonal_side", diagonal_side, DIAGONAL_SIDES),
                               ("expansion", expansion, EXPANSIONS)):
        if value not in valid:
            raise ValueError(f"{prefix}{name} must be one of {', '.join(valid)}, got {value!r}")
    if not 0.0 <= leaky_slope <= 1.0:
        raise ValueError(f"{prefix}leaky_slope must be in [0, 1], got {leaky_slope}")


def fft_size(min_size):
    """The smallest n >= min_size with no prime factor above 7."""
    n = max(1, int(min_size))
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


# -- plain functions on tensors ----------------------------------------------------------------

def circulant_matmul(x, c):
    """circ(c) applied to each row of x: x [..., n], c [n] -> [..., n] (float32)."""
    n = c.shape[-1]
    return _apply_spectrum(x, tf.signal.rfft(c), n)


def _apply_spectrum(x, c_spectrum, n):
    """circ(c) x given rfft(c); x [..., m] with m <= n is zero-padded to n by the FFT."""
    return tf.signal.irfft(tf.signal.rfft(x, fft_length=[n]) * c_spectrum, fft_length=[n])


def diagonal_circulant(x, diagonals, circulants, units, diagonal_side=DEFAULT_DIAGONAL_SIDE,
                       blocks=1, leaky_slope=1.0, recompute=False):
    """y = x @ A[:units, :n_in].T for the layer's product A (see the module's docstring).

    x [..., n_in]; diagonals, circulants [k, blocks * n] with n >= n_in: `blocks` independent
    n x n products side by side, their outputs concatenated (one block: n >= units too).
    diagonal_side "output": each factor is diag(d) circ(c); "input": circ(c) diag(d), the
    diagonal applied to the factor's input. leaky_slope != 1 puts a leaky ReLU of that slope
    between factors (then A is no longer linear). The circulant vectors go through the FFT once
    per call, whatever the batch; no n x n matrix is formed.

    recompute: keep only x for the backward pass and compute the factors' intermediate values
    again there (one more FFT pair per factor), instead of keeping two [rows, n] tensors per
    factor from the forward pass; both passes then work one block after another.
    """
    check_options(diagonal_side)
    n = circulants.shape[-1] // blocks
    n_in = x.shape[-1]
    if n_in is not None and n_in > n:
        raise ValueError(f"input size {n_in} exceeds the factors' size {n}")
    if units > blocks * n:
        raise ValueError(f"{units} outputs exceed {blocks} block(s) of {n}")
    leading = tf.shape(x)[:-1]
    rows = _diagonal_circulant_rows(n_in, units, blocks, diagonal_side, float(leaky_slope),
                                    recompute)
    y = rows(tf.reshape(x, [-1, n_in]), diagonals, circulants)
    return tf.reshape(y, tf.concat([leading, [units]], axis=0))


def _diagonal_circulant_rows(n_in, units, blocks, diagonal_side, slope, recompute=False):
    """diagonal_circulant on rows x [M, n_in], with a hand-written gradient.

    Per factor, training needs two rfft/irfft pairs on the rows, the least possible: one
    forward, and one backward for the input's gradient, since circ(c)^T = circ(c reversed) has
    the spectrum conj(rfft(c)). Both weight gradients are row sums: the circulant vector's is
    one irfft of the spectra summed over rows, so it costs no FFT per row.
    """

    options = (n_in, units, blocks, diagonal_side == "input", slope)

    @tf.custom_gradient
    def rows(x, diagonals, circulants):
        if not recompute:
            return _forward_and_gradient(x, diagonals, circulants, *options)
        return _blockwise_recomputed(x, diagonals, circulants, *options)

    return rows


def _blockwise_recomputed(x, diagonals, circulants, n_in, units, blocks, input_side, slope):
    """(y, grad) of diagonal_circulant that keeps only x for the backward pass, and works one
    block after another in both passes: each block's values exist only while it is computed,
    so an expanding layer's transient memory is one block's, not all of them at once."""
    n = circulants.shape[-1] // blocks
    parts = [(b * n, min(n, units - b * n)) for b in range(blocks)]

    def block(after, b, start, width):
        """Block b on x, started only once `after` exists (one block at a time)."""
        with tf.control_dependencies(after):
            x_now = tf.identity(x)
        return _forward_and_gradient(x_now, diagonals[:, b * n:(b + 1) * n],
                                     circulants[:, b * n:(b + 1) * n], n_in, width, 1,
                                     input_side, slope)

    outputs = []
    for b, (start, width) in enumerate(parts):
        outputs.append(block(outputs[-1:], b, start, width)[0])
    y = tf.concat(outputs, axis=1)

    def grad(dy):
        # Computed again here, after dy exists, so that it cannot be merged with the forward.
        dx, d_diagonals, d_circulants, last = None, [], [], [dy]
        for b, (start, width) in enumerate(parts):
            g = block(last, b, start, width)[1](dy[:, start:start + width])
            dx = g[0] if dx is None else dx + g[0]
            d_diagonals.append(g[1])
            d_circulants.append(g[2])
            last = [dx]
        return dx, tf.concat(d_diagonals, axis=1), tf.concat(d_circulants, axis=1)

    return y, grad


def _forward_and_gradient(x, diagonals, circulants, n_in, units, blocks, input_side, slope):
    k = circulants.shape[0]
    n = circulants.shape[-1] // blocks
    d = tf.reshape(diagonals, [k, blocks, n])
    spectra = tf.signal.rfft(tf.reshape(circulants, [k, blocks, n]))  # (k, blocks, n // 2 + 1)
    h = tf.pad(x, [[0, 0], [0, n - n_in]])[:, None, :]  # (M, 1, n): one input for every block
    saved, scales = [], []  # per factor in the order applied (factor k-1 first)
    for i in reversed(range(k)):
        if input_side:  # u = circ(c_i) (d_i * h)
            v_spectrum = tf.signal.rfft(h * d[i])
            z = tf.signal.irfft(v_spectrum * spectra[i], fft_length=[n])
            saved.append((h, v_spectrum))
        else:  # z = d_i * circ(c_i) h
            h_spectrum = tf.signal.rfft(h)
            u = tf.signal.irfft(h_spectrum * spectra[i], fft_length=[n])
            z = u * d[i]
            saved.append((h_spectrum, u))
        if i > 0 and slope != 1.0:  # leaky ReLU between factors, not after the last
            scale = tf.where(z > 0, 1.0, slope)
            scales.append(scale)
            h = z * scale
        else:
            scales.append(None)
            h = z
    m = tf.shape(x)[0]
    y = tf.reshape(h, [m, blocks * n])[:, :units]

    def grad(dy):
        g = tf.reshape(tf.pad(dy, [[0, 0], [0, blocks * n - units]]), [m, blocks, n])
        d_diagonals, d_circulants = [None] * k, [None] * k
        for i in range(k):  # the reverse of the forward order
            first, second = saved[k - 1 - i]
            if scales[k - 1 - i] is not None:
                g = g * scales[k - 1 - i]
            if input_side:
                h_in, v_spectrum = first, second
                g_spectrum = tf.signal.rfft(g)
                d_circulants[i] = tf.signal.irfft(
                    tf.reduce_sum(g_spectrum * tf.math.conj(v_spectrum), axis=0),
                    fft_length=[n])
                g_v = tf.signal.irfft(g_spectrum * tf.math.conj(spectra[i]), fft_length=[n])
                d_diagonals[i] = tf.reduce_sum(g_v * h_in, axis=0)
                g = g_v * d[i]
            else:
                h_spectrum, u = first, second
                d_diagonals[i] = tf.reduce_sum(g * u, axis=0)
                g_u = tf.signal.rfft(g * d[i])  # spectrum of dL/du
                d_circulants[i] = tf.signal.irfft(
                    tf.reduce_sum(g_u * tf.math.conj(h_spectrum), axis=0), fft_length=[n])
                g = tf.signal.irfft(g_u * tf.math.conj(spectra[i]), fft_length=[n])  # dL/dh
        dx = tf.reduce_sum(g, axis=1)[:, :n_in]  # the blocks share the input
        return (dx, tf.reshape(tf.stack(d_diagonals), [k, blocks * n]),
                tf.reshape(tf.stack(d_circulants), [k, blocks * n]))

    return y, grad


def dense_matrix(diagonals, circulants, n_in, units, diagonal_side=DEFAULT_DIAGONAL_SIDE,
                 blocks=1):
    """The explicit [units, n_in] matrix A of a linear `diagonal_circulant` (tests, inspection)."""
    identity = tf.eye(n_in, dtype=tf.float32)
    return tf.transpose(diagonal_circulant(identity, diagonals, circulants, units,
                                           diagonal_side, blocks))


def block_layout(n_in, units, expansion=DEFAULT_EXPANSION):
    """(blocks, n): how many independent n x n products a layer of that shape uses."""
    check_options(expansion=expansion)
    if expansion == "blocks" and units > n_in:
        n = fft_size(n_in)
        return math.ceil(units / n), n
    return 1, fft_size(max(n_in, units))


def weight_count(n_in, units, k_factors=1, use_bias=True, expansion=DEFAULT_EXPANSION):
    """Weights of a diagonal-circulant layer: 2*k*n per block (+ units for the bias)."""
    blocks, n = block_layout(n_in, units, expansion)
    return 2 * k_factors * blocks * n + (units if use_bias else 0)


# -- initialisation ----------------------------------------------------------------------------

def initial_values(name, k, n, units, seed=None, n_in=None, blocks=1):
    """(diagonals, circulants) initial values [k, blocks * n], float32, by the scheme `name`.

    n is the size of one block's factors, which sets the variances below.

    * "fan_in": ours. Diagonals uniform in {-1, +1}; the circulant vector applied first (to the
      zero-padded input, n_in of its n entries non-zero) from N(0, 2/n_in), the others from
      N(0, 1/n). Each later factor then keeps the variance, and the layer as a whole scales it
      by 2/n_in * n_in = 2, as He et al. (2015) ask of a layer followed by a ReLU, whatever k
      and whatever the padding. "araujo2020" instead doubles the variance at every factor (it
      assumes a ReLU after each one) and shrinks it by n_in/n when the input is padded.
    * "araujo2020" (default): Araujo, Negrevergne, Chevaleyre & Atif, "Understanding and
      training deep diagonal circulant neural networks" (ECAI 2020): circulant vectors from
      N(0, 2/n), diagonals uniform in {-1, +1}; the variance does not depend on k.
    * "araujo2018": the 2018 paper's code: both vectors from N(0, 1/units).
    * "cheng2015": Cheng et al., "An exploration of parameter redundancy in deep networks with
      circulant projections" (ICCV 2015): random {-1, +1} diagonals that stay fixed (the layer
      does not train them); circulant vectors as in "araujo2020".
    """
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(INITIALIZERS)}")
    rng = np.random.default_rng(seed)
    shape = (k, blocks * n)
    if name == "fan_in":
        diagonals = rng.choice([-1.0, 1.0], size=shape)
        circulants = rng.normal(0, math.sqrt(1.0 / n), shape)
        circulants[-1] = rng.normal(0, math.sqrt(2.0 / (n_in or n)), blocks * n)  # applied first
    elif name == "araujo2018":
        std = math.sqrt(1.0 / units)
        diagonals, circulants = rng.normal(0, std, shape), rng.normal(0, std, shape)
    else:
        diagonals = rng.choice([-1.0, 1.0], size=shape)
        circulants = rng.normal(0, math.sqrt(2.0 / n), shape)
    return diagonals.astype(np.float32), circulants.astype(np.float32)


# -- the Keras layer ----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="yt8m")
class DiagonalCirculant(keras.layers.Layer):
    """A drop-in for `keras.layers.Dense` with a diagonal-circulant weight matrix.

    Works on any leading dimensions ([B, F], [B, T, F]). Weights: `diagonals` [k, blocks * n],
    `circulants` [k, blocks * n], and `bias` [units]. diagonal_side, expansion and leaky_slope:
    see the module's docstring. Under a mixed-precision policy the FFTs run in float32 and the
    output is cast to the compute dtype.
    """

    def __init__(self, units, k_factors=1, use_bias=True, activation=None,
                 initializer=DEFAULT_INITIALIZER, regularizer=None, seed=None,
                 bias_initializer="zeros", diagonal_side=DEFAULT_DIAGONAL_SIDE,
                 expansion=DEFAULT_EXPANSION, leaky_slope=1.0, recompute=False, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or k_factors < 1:
            raise ValueError(f"units and k_factors must be positive, got {units}, {k_factors}")
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"unknown initializer {initializer!r}; choose one of {', '.join(INITIALIZERS)}")
        check_options(diagonal_side, expansion, leaky_slope)
        self.diagonal_side, self.expansion = diagonal_side, expansion
        self.leaky_slope = float(leaky_slope)
        self.recompute = bool(recompute)  # memory for time in training (diagonal_circulant)
        self.units = int(units)
        self.k_factors = int(k_factors)
        self.use_bias = use_bias
        self.activation = keras.activations.get(activation)
        self.initializer = initializer
        self.regularizer = keras.regularizers.get(regularizer)
        self.seed = seed
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.input_dim = int(input_shape[-1])
        self.blocks, self.n = block_layout(self.input_dim, self.units, self.expansion)
        # Without a seed, draw one from NumPy, which keras.utils.set_random_seed seeds.
        seed = self.seed if self.seed is not None else np.random.randint(2**31)
        diagonals, circulants = initial_values(self.initializer, self.k_factors, self.n,
                                               self.units, seed, self.input_dim, self.blocks)
        shape = (self.k_factors, self.blocks * self.n)
        self.diagonals = self.add_weight(
            name="diagonals", shape=shape, initializer=keras.initializers.Constant(diagonals),
            regularizer=self.regularizer, trainable=self.initializer != "cheng2015")
        self.circulants = self.add_weight(
            name="circulants", shape=shape, initializer=keras.initializers.Constant(circulants),
            regularizer=self.regularizer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,),
                                        initializer=self.bias_initializer)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        y = diagonal_circulant(x, tf.cast(self.diagonals, tf.float32),
                               tf.cast(self.circulants, tf.float32), self.units,
                               self.diagonal_side, self.blocks, self.leaky_slope,
                               self.recompute)
        if self.bias is not None:
            y = y + tf.cast(self.bias, tf.float32)
        y = tf.cast(y, self.compute_dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def dense_matrix(self):
        """The equivalent [units, input_dim] matrix A (y = x @ A.T + bias); linear layers only."""
        if self.leaky_slope != 1.0 and self.k_factors > 1:
            raise ValueError("a layer with a leaky ReLU between its factors has no matrix")
        return dense_matrix(tf.cast(self.diagonals, tf.float32),
                            tf.cast(self.circulants, tf.float32), self.input_dim, self.units,
                            self.diagonal_side, self.blocks)

    structure_kind = "circulant"  # layer_kinds' protocol

    def structured_variables(self):
        return [self.diagonals, self.circulants]

    def dense_weight_count(self):
        """Weights of the Dense layer this one replaces."""
        return self.input_dim * self.units + (self.units if self.use_bias else 0)

    @classmethod
    def from_config(cls, config):
        """A layer saved before the options existed keeps the form it was trained in."""
        return cls(**{"diagonal_side": FIRST_DIAGONAL_SIDE, "expansion": FIRST_EXPANSION,
                      **config})

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, k_factors=self.k_factors, use_bias=self.use_bias,
                      activation=keras.activations.serialize(self.activation),
                      initializer=self.initializer,
                      regularizer=keras.regularizers.serialize(self.regularizer),
                      seed=self.seed,
                      bias_initializer=keras.initializers.serialize(self.bias_initializer),
                      diagonal_side=self.diagonal_side, expansion=self.expansion,
                      leaky_slope=self.leaky_slope)
        return config
