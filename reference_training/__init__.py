"""Reference trainers for the GLF losses in PyTorch, JAX and TensorFlow."""
