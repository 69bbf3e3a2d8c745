"""Stage 1, record: the seeded choice of samples from a corpus (``sampling``; the readers and the packaged offline
text are the foundation's, ``fnet_dist.core.corpora`` and ``fnet_dist.core.offline``), and every layer's MLP-block
output for their tokens into an activations store (``recording``: ``record_activations``)."""
