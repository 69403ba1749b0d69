"""The quantization of YouTube-8M frame features: float values in [-2, 2] stored as uint8.

`dequantize` reads a stored q as q * 4/255 - 2 + 4/512, as the starter's readers do;
`quantize` (used by generate_data.py) writes round((x + 2) * 255/4), its inverse up to rounding.
"""

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
