"""Diagonal-circulant layers: a dense n_out x n_in matrix replaced by A = D1 C1 D2 C2 ... Dk Ck.

Araujo, Negrevergne, Chevaleyre & Atif, "Training compact deep learning models for video
classification using circulant matrices" (ECCV 2018 workshops); the decomposition of any matrix
into such a product: Huhtanen & Peramaki, "Factoring matrices into the product of circulant and
diagonal matrices" (2015).

Definitions (the tests hold the code to them):

* `circ(c)` is the n x n matrix with first column c, `C[i, j] = c[(i - j) mod n]`, so `C x` is the
  circular convolution of c and x, computed as `irfft(rfft(c) * rfft(x), n)`.
* `D_i = diag(d_i)`. A is applied to x from the right: Ck first, then Dk, ..., C1, D1.
* Row vectors x [..., n_in] are padded with zeros to n, multiplied by A, and the first n_out
  outputs kept: `y = x @ A[:n_out, :n_in].T (+ bias)`.

An n x n factor pair keeps 2n weights instead of n**2 and costs O(n log n). n is the smallest size
at least max(n_in, n_out) whose prime factors are all 2, 3, 5 or 7 (`fft_size`): FFT libraries
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


def diagonal_circulant(x, diagonals, circulants, units):
    """y = x @ A[:units, :n_in].T with A = diag(d_1) circ(c_1) ... diag(d_k) circ(c_k).

    x [..., n_in]; diagonals, circulants [k, n] with n >= max(n_in, units). The circulant
    vectors go through the FFT once per call, whatever the batch; no n x n matrix is formed.
    """
    n = circulants.shape[-1]
    n_in = x.shape[-1]
    if n_in is not None and n_in > n:
        raise ValueError(f"input size {n_in} exceeds the factors' size {n}")
    leading = tf.shape(x)[:-1]
    rows = _diagonal_circulant_rows(n_in, units)
    y = rows(tf.reshape(x, [-1, n_in]), diagonals, circulants)
    return tf.reshape(y, tf.concat([leading, [units]], axis=0))


def _diagonal_circulant_rows(n_in, units):
    """diagonal_circulant on rows x [M, n_in], with a hand-written gradient.

    Per factor, training needs two rfft/irfft pairs on the rows, the least possible: one
    forward, and one backward for the input's gradient, since circ(c)^T = circ(c reversed) has
    the spectrum conj(rfft(c)). Both weight gradients are row sums: the circulant vector's is
    one irfft of the spectra summed over rows, so it costs no FFT per row.
    """

    @tf.custom_gradient
    def rows(x, diagonals, circulants):
        return _forward_and_gradient(x, diagonals, circulants, n_in, units)

    return rows


def _forward_and_gradient(x, diagonals, circulants, n_in, units):
    n = circulants.shape[-1]
    k = circulants.shape[0]
    spectra = tf.signal.rfft(circulants)  # (k, n // 2 + 1)
    inputs_spectra, convolved = [], []
    h = x
    for i in reversed(range(k)):
        h_spectrum = tf.signal.rfft(h, fft_length=[n])  # (M, n // 2 + 1); pads h to n
        u = tf.signal.irfft(h_spectrum * spectra[i], fft_length=[n])  # (M, n) = circ(c_i) h
        inputs_spectra.append(h_spectrum)
        convolved.append(u)
        h = u * diagonals[i]
    y = h[:, :units] if units < n else h

    def grad(dy):
        g = tf.pad(dy, [[0, 0], [0, n - units]]) if units < n else dy  # (M, n)
        d_diagonals, d_circulants = [None] * k, [None] * k
        for i in range(k):  # the reverse of the forward order, which stored factor i last-first
            h_spectrum, u = inputs_spectra[k - 1 - i], convolved[k - 1 - i]
            d_diagonals[i] = tf.reduce_sum(g * u, axis=0)
            g_u = tf.signal.rfft(g * diagonals[i])  # spectrum of dL/du
            d_circulants[i] = tf.signal.irfft(
                tf.reduce_sum(g_u * tf.math.conj(h_spectrum), axis=0), fft_length=[n])
            g = tf.signal.irfft(g_u * tf.math.conj(spectra[i]), fft_length=[n])  # dL/dh
        return (g[:, :n_in] if n_in < n else g), tf.stack(d_diagonals), tf.stack(d_circulants)

    return y, grad


def dense_matrix(diagonals, circulants, n_in, units):
    """The explicit [units, n_in] matrix A of `diagonal_circulant` (for tests and inspection)."""
    identity = tf.eye(n_in, dtype=tf.float32)
    return tf.transpose(diagonal_circulant(identity, diagonals, circulants, units))


def weight_count(n_in, units, k_factors=1, use_bias=True):
    """Weights of a diagonal-circulant layer: 2*k*n (+ units for the bias)."""
    return 2 * k_factors * fft_size(max(n_in, units)) + (units if use_bias else 0)


# -- initialisation ----------------------------------------------------------------------------

def initial_values(name, k, n, units, seed=None, n_in=None):
    """(diagonals, circulants) initial values [k, n], float32, by the scheme `name`.

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
    if name == "fan_in":
        diagonals = rng.choice([-1.0, 1.0], size=(k, n))
        circulants = rng.normal(0, math.sqrt(1.0 / n), (k, n))
        circulants[-1] = rng.normal(0, math.sqrt(2.0 / (n_in or n)), n)  # applied first
    elif name == "araujo2018":
        std = math.sqrt(1.0 / units)
        diagonals, circulants = rng.normal(0, std, (k, n)), rng.normal(0, std, (k, n))
    else:
        diagonals = rng.choice([-1.0, 1.0], size=(k, n))
        circulants = rng.normal(0, math.sqrt(2.0 / n), (k, n))
    return diagonals.astype(np.float32), circulants.astype(np.float32)


# -- the Keras layer ----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="yt8m")
class DiagonalCirculant(keras.layers.Layer):
    """A drop-in for `keras.layers.Dense` with a diagonal-circulant weight matrix.

    Works on any leading dimensions ([B, F], [B, T, F]). Weights: `diagonals` [k, n],
    `circulants` [k, n], and `bias` [units]. Under a mixed-precision policy the FFTs run in
    float32 and the output is cast to the compute dtype.
    """

    def __init__(self, units, k_factors=1, use_bias=True, activation=None,
                 initializer=DEFAULT_INITIALIZER, regularizer=None, seed=None,
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if units < 1 or k_factors < 1:
            raise ValueError(f"units and k_factors must be positive, got {units}, {k_factors}")
        if initializer not in INITIALIZERS:
            raise ValueError(
                f"unknown initializer {initializer!r}; choose one of {', '.join(INITIALIZERS)}")
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
        self.n = fft_size(max(self.input_dim, self.units))
        # Without a seed, draw one from NumPy, which keras.utils.set_random_seed seeds.
        seed = self.seed if self.seed is not None else np.random.randint(2**31)
        diagonals, circulants = initial_values(
            self.initializer, self.k_factors, self.n, self.units, seed, self.input_dim)
        shape = (self.k_factors, self.n)
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
                               tf.cast(self.circulants, tf.float32), self.units)
        if self.bias is not None:
            y = y + tf.cast(self.bias, tf.float32)
        y = tf.cast(y, self.compute_dtype)
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def dense_matrix(self):
        """The equivalent [units, input_dim] matrix A (y = x @ A.T + bias)."""
        return dense_matrix(tf.cast(self.diagonals, tf.float32),
                            tf.cast(self.circulants, tf.float32), self.input_dim, self.units)

    def dense_weight_count(self):
        """Weights of the Dense layer this one replaces."""
        return self.input_dim * self.units + (self.units if self.use_bias else 0)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, k_factors=self.k_factors, use_bias=self.use_bias,
                      activation=keras.activations.serialize(self.activation),
                      initializer=self.initializer,
                      regularizer=keras.regularizers.serialize(self.regularizer),
                      seed=self.seed,
                      bias_initializer=keras.initializers.serialize(self.bias_initializer))
        return config
