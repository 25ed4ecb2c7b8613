"""What a run leaves for people to look at: terminal progress bars and the JSON report
(``progress``), progress videos and loss plots (``recorder``, drawn by ``plot``), and the layer
and sweep explorations (``explore``).

Consumers of the core's ``Progress`` events; may import ``video`` (its writer), ``still``,
``network``, ``optim`` and the top-level modules, never the command line."""
