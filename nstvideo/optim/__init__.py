"""The optimizer: one unit of optimization (``engine``: a canvas, an objective, iterations ->
a canvas, with ``Progress`` events to callbacks) and our L-BFGS (``lbfgs``).

Tensors in, tensors out. May import the top-level modules only; it never sees a network."""
