"""Scale out: one video spread over workers on many devices and machines (Ray), with no seam where
its segments meet; and a folder's images, a sweep's runs or a layer set over the same workers.
``plan`` cuts the frames into segments (pure, meeting scene cuts); ``joins`` blends and refines
each boundary window (tensors in, tensors out); ``worker`` is what a worker process does for a
video, ``stills`` for independent stills; ``cluster`` is the only module that imports Ray;
``state`` keeps the work folder; ``driver`` hands out the work and saves what comes back.

May import ``video`` and everything below it; ``records`` and the command line consume its
events."""
