"""Quantization in one place: of YouTube-8M frame features (float values in [-2, 2] stored as
uint8) and of a model's weights for export (float16, or uint8 indices into a per-tensor codebook
of 256 values).

Features: `dequantize` reads a stored q as q * 4/255 - 2 + 4/512, as the starter's readers do;
`quantize` (used by generate_data.py) writes round((x + 2) * 255/4), its inverse up to rounding.

Weights: `WeightPrecision` encodes each tensor of at least `min_elements` values (smaller ones,
biases and batch-norm statistics mostly, stay float32, as the 2018 winners' quantize.py did) and
`decode` turns the stored form back into float32 inside a graph.
"""

import dataclasses

import numpy as np
import tensorflow as tf

# q * 4/255 - 2 + 4/512 is (2048 q - 260100) / 130560. Numerator and denominator are exact in
# float32 and a division is rounded once, so every dequantized value is the float32 nearest to
# the exact one.
NUMERATOR_SCALE, NUMERATOR_BIAS, DENOMINATOR = 2048.0, -260100.0, 130560.0


def quantize(values):
    """float features -> uint8, the inverse of dequantize up to rounding."""
    clipped = np.clip(values, -2.0, 2.0)
    return np.round((clipped + 2.0) * (255.0 / 4.0)).astype(np.uint8)


def dequantize(quantized):
    """uint8 YouTube-8M frame values -> float32 in [-2, 2], each the nearest float32."""
    numerator = tf.cast(quantized, tf.float32) * NUMERATOR_SCALE + NUMERATOR_BIAS
    return numerator / DENOMINATOR


# -- weights --------------------------------------------------------------------------------------

PRECISIONS = ("float32", "float16", "uint8")
CODEBOOKS = ("uniform", "kmeans")
LEVELS = 256
MIN_ELEMENTS = 17_000  # the 2018 winners' threshold: tensors of more values are quantized


def uniform_codebook(values):
    """256 values evenly spaced from the tensor's minimum to its maximum (float32)."""
    low, high = float(np.min(values)), float(np.max(values))
    return np.linspace(low, high, LEVELS, dtype=np.float64).astype(np.float32)


def kmeans_codebook(values, iterations=100):
    """256 values that lower the squared error of each value to its nearest: Lloyd's algorithm
    in one dimension, started where high-resolution theory puts the optimum (entries spread as
    the cube root of the values' density, Panter & Dite 1951) and kept only if it beats the
    uniform codebook (float32)."""
    flat = np.sort(np.asarray(values, np.float64).ravel())
    uniform = uniform_codebook(flat)
    # The density from 4,096 bins of equal counts (narrow where values crowd, wide in tails).
    edges = np.quantile(flat, np.linspace(0, 1, 4097))
    widths = np.diff(edges)
    density = np.divide(1.0, widths, out=np.zeros_like(widths), where=widths > 0)
    spread = np.r_[0.0, np.cumsum(np.cbrt(density) * widths)]
    centers = np.interp((np.arange(LEVELS) + 0.5) / LEVELS * spread[-1], spread, edges)
    running = np.r_[0.0, np.cumsum(flat)]  # sums of any run of sorted values
    for _ in range(iterations):
        # Sorted values and sorted centers: each center's members lie between two midpoints.
        bounds = np.r_[0, np.searchsorted(flat, (centers[1:] + centers[:-1]) / 2), flat.size]
        sums, counts = np.diff(running[bounds]), np.diff(bounds)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        moved = np.sort(moved)
        if np.allclose(moved, centers, rtol=0, atol=1e-12):
            break
        centers = moved
    found = centers.astype(np.float32)

    def error(book):
        return np.mean((book[nearest_indices(flat, book)] - flat) ** 2)

    return found if error(found) <= error(uniform) else uniform


def nearest_indices(values, codebook):
    """uint8 index of the codebook value nearest to each value (codebook ascending)."""
    values = np.asarray(values, np.float32)
    upper = np.clip(np.searchsorted(codebook, values), 1, len(codebook) - 1)
    lower = upper - 1
    closer_to_lower = np.abs(values - codebook[lower]) <= np.abs(codebook[upper] - values)
    return np.where(closer_to_lower, lower, upper).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class WeightPrecision:
    """How an export stores a model's weights: float32, float16 or uint8 (a codebook of 256
    values per tensor, uniform or k-means), for tensors of at least min_elements values.
    Tensors kept in float16 already (a KnnMoeModel's memory) are stored as uint8 too."""

    name: str = "float32"
    codebook: str = "uniform"
    min_elements: int = MIN_ELEMENTS

    def __post_init__(self):
        if self.name not in PRECISIONS:
            raise ValueError(f"unknown --quantize {self.name!r}; choose one of "
                             f"{', '.join(PRECISIONS)}")
        if self.codebook not in CODEBOOKS:
            raise ValueError(f"unknown --quantize_codebook {self.codebook!r}; choose one of "
                             f"{', '.join(CODEBOOKS)}")
        if self.min_elements < 1:
            raise ValueError(f"--quantize_min_elements must be at least 1, got "
                             f"{self.min_elements}")

    def applies(self, size, dtype=np.float32):
        stored = {"float32": (), "float16": (np.float32,), "uint8": (np.float32, np.float16)}
        return size >= self.min_elements and np.dtype(dtype) in stored[self.name]

    def stored_bytes(self, size, dtype=np.float32):
        """Bytes of a tensor of `size` values as this precision stores it."""
        itemsize = np.dtype(dtype).itemsize
        if not self.applies(size, dtype):
            return size * itemsize
        return size * 2 if self.name == "float16" else size + LEVELS * 4

    def encode(self, array):
        """{name: numpy array} that `decode` turns back into the tensor: {"values"} as is or
        float16, or {"indices" (uint8), "codebook" (float32 [256])}."""
        array = np.asarray(array)
        if not self.applies(array.size, array.dtype):
            return {"values": array}
        if self.name == "float16":
            return {"values": array.astype(np.float16)}
        array = array.astype(np.float32)  # the codebook of a float16 tensor too
        book = (kmeans_codebook if self.codebook == "kmeans" else uniform_codebook)(array)
        return {"indices": nearest_indices(array, book), "codebook": book}


def decode(stored, dtype=tf.float32):
    """The tensor of what WeightPrecision.encode stored (tf values), inside a graph, in the
    dtype of the weight it was (float32, or float16 where the model keeps float16)."""
    if "indices" in stored:
        return tf.cast(tf.gather(stored["codebook"], tf.cast(stored["indices"], tf.int32)),
                       dtype)
    values = stored["values"]
    return tf.cast(values, dtype) if values.dtype == tf.float16 else values
