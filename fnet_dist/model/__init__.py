"""The model and its neurons, shared by every stage that runs it: loading and placement (``loading``), each
family's MLP-block output (``architectures``), capturing it (``hooks``) in a forward pass (``trace``), neuron
masks (``masks``), editing them while the model runs (``edit``) or baking the edit into weights (``bake``,
``bake_stream``, ``weights``) and a checkpoint (``checkpoint``), and tiny random models of every family for tests
(``testing``)."""
