"""Video, in the order a frame travels: ffmpeg in and out (``io``), the selected frames read and
resized (``source``), optical flow and reliability masks (``flow``) computed one frame ahead
(``lookahead``), the frame loop that optimizes each frame warm-started from the previous one
(``frames``), then the work folder and its resume state (``workdir``, one run at a time:
``lock``) and the sink that saves and encodes finished frames (``sink``); image sequences in and
out are ``sequence``; ``eval`` and ``quality`` measure the result (warping error; strip ratios
and detail under known motion).

May import ``still``, ``network``, ``optim`` and the top-level modules; ``frames`` and ``flow``
take and return tensors and arrays, and only ``io``, ``source``, ``sequence``, ``workdir``,
``lock`` and ``sink`` touch files and processes."""
