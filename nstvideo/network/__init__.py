"""The network and what it measures: the frozen VGG and its named layers (``features``), where its
weights come from (``weights``), the loss terms as pure functions (``losses``), their weighted sum
for one image (``objective``) and colour preservation (``color``).

Tensors in, tensors out. May import only the top-level modules (``config``, ``errors``,
``runtime``, ``images``) and each other."""
