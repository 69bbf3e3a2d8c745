"""Where everything is kept: store URLs through fsspec (``storage``), the activations store's layout and
writes (``activations``), and the one output rule: a command replaces only what it wrote (``outputs``)."""
