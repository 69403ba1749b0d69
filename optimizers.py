"""The optimizers of a training run: the starter's names (--optimizer), Adam fused into one
kernel a variable, and a second optimizer for each kind of structured weights that has its own
learning-rate scale (--learning_rate_scales)."""

import keras
import tensorflow as tf

import layer_kinds
import model_utils
import utils


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, each variable's update one TensorFlow kernel (ResourceApplyAdam): one pass
    over the weight and its two moments instead of Keras' several, the same formula (Kingma &
    Ba's, epsilon outside the square root). On the 2-core CPU the update of the 22M weights of
    the video-level MoE took 32 ms instead of 76 (BENCHMARKS.md)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=beta_1 ** step,
            beta2_power=beta_2 ** step, lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


OPTIMIZERS = {
    "AdamOptimizer": FusedAdam,
    "GradientDescentOptimizer": keras.optimizers.SGD,
    "MomentumOptimizer": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, **kw),
    "AdagradOptimizer": keras.optimizers.Adagrad,
    "RMSPropOptimizer": keras.optimizers.RMSprop,
}


def for_kinds(config, model, saved, learning_rate, schedule):
    """({name: optimizer}, {name: its variables}): "optimizer" for the weights at
    `learning_rate`, and "<kind>_optimizer" for the structured variables of each kind that the
    config scales (the names of their slots in checkpoints), at schedule(scaled rate).

    A resumed run keeps the optimizers of its checkpoint (`saved`: the names of what it holds),
    whose slots are laid out by them: a kind that had its own keeps it (at scale 1 if none is
    given now; Keras clips and updates each variable alone, so that is the same training), and
    a kind that had none cannot get one."""
    c = config
    clip = {"clipnorm": c.clip_gradient_norm} if c.clip_gradient_norm > 0 else {}
    trainable = model.trainable_variables
    optimizers = {"optimizer": OPTIMIZERS[c.optimizer](learning_rate, **clip)}
    groups = {"optimizer": trainable}
    scales = c.kind_scales()
    if saved:
        had = {kind for kind in layer_kinds.STRUCTURED if f"{kind}_optimizer" in saved}
        for kind in sorted(set(scales) - had):
            if model_utils.structured_variables(model, kind):
                raise ValueError(
                    f"{c.train_dir} trained its {kind} weights with the others' optimizer: "
                    f"a learning-rate scale for them cannot start on resume; leave out "
                    f"--learning_rate_scales={kind} (or --circulant_learning_rate_scale), "
                    "or train afresh with --start_new_model")
        scales = {kind: scales.get(kind, 1.0) for kind in had}
    for kind, scale in sorted(scales.items()):
        scaled = {id(v) for v in model_utils.structured_variables(model, kind)}
        if not scaled:
            utils.warn(f"--learning_rate_scales={kind}: this model has no {kind} weights: "
                       "ignored")
            continue
        name = f"{kind}_optimizer"
        optimizers[name] = OPTIMIZERS[c.optimizer](schedule(c.base_learning_rate * scale),
                                                   **clip)
        groups[name] = [v for v in trainable if id(v) in scaled]
        groups["optimizer"] = [v for v in groups["optimizer"] if id(v) not in scaled]
    return optimizers, groups
