"""A still image of any size, posters included: coarse-to-fine scales and the memory plan
(``schedule``), block geometry (``tiling``), the exact block-wise global loss (``blockwise``) and
the still job that ties them together (``stylize``).

Tensors in, tensors out. May import ``network``, ``optim`` and the top-level modules."""
