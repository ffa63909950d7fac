"""ei_keras: excitatory-inhibitory (Dale's principle) networks and inhibitory normalization of
error signals, as Keras 3 layers and models that run under TensorFlow, JAX and PyTorch.

Reference: Eyono, Levenstein, Ghosh, Cornford, Richards (2026), "Inhibitory normalization of
error signals improves learning in neural circuits".
"""

__version__ = "0.1.0"
