"""Task YAMLs on hub datasets, with their helper functions (``squad_utils``)."""
