"""The model and its neurons, shared by every stage that runs it: loading and placement (``loading``), each
family's MLP-block output (``architectures``), capturing it (``hooks``), neuron masks (``masks``), editing
them while the model runs or baking the edit into weights (``edit``, ``bake_stream``), and tiny random models
of every family for tests (``testing``)."""
