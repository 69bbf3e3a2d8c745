"""Where everything is kept: store URLs through fsspec (``locations``), opening and writing stores (``storage``),
the activations store's array and writes (``activations``), and the one output rule: a command replaces only
what it wrote (``outputs``)."""
