"""Where a run trains: logical CPUs, local GPUs or several workers (TF_CONFIG), as a
tf.distribute strategy, and which worker is the chief."""

import json
import os

import numpy as np
import tensorflow as tf

import utils


def split_cpu(cpu_devices):
    """The CPU as `cpu_devices` logical devices. TensorFlow allows it only before its first
    op: a tool calls this first (train.py reads records before it builds the Trainer)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * cpu_devices
    if len(tf.config.get_logical_device_configuration(cpu) or []) == cpu_devices:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise RuntimeError(f"--cpu_devices={cpu_devices}: TensorFlow started before the CPU "
                           "was split; call devices.split_cpu first") from None


def make_strategy(cpu_devices=0, num_gpu=None):
    """N logical CPUs (cpu_devices > 1), several workers (TF_CONFIG), num_gpu local GPUs (None:
    all; 0: the CPU), or one device."""
    if cpu_devices > 1:
        split_cpu(cpu_devices)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_devices)])
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = len(tf.config.list_physical_devices("GPU"))
    if num_gpu is not None and num_gpu > gpus:
        utils.warn(f"--num_gpu={num_gpu}: this machine has {gpus} GPUs; using {gpus}")
    used = gpus if num_gpu is None else min(num_gpu, gpus)
    if used > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(used)])
    if used == 0 and gpus:
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return tf.distribute.get_strategy()


def is_chief_worker(strategy):
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def gather(strategy, values):
    return np.concatenate([v.numpy() for v in strategy.experimental_local_results(values)])
