"""lm-eval task YAMLs shipped with fnet-dist.

- ``offline/``: tasks on the packaged material of OFFLINE.md; their ``data_files`` name a JSONL file that
  ``fnet_dist.evaluate.tasks`` writes from ``fnet_dist.core.offline`` into a cache folder at run time.
- ``hub/``: the paper's tasks that lm-eval does not ship in the needed form (AG News 4-way, SQuAD v1.1
  exact match / F1); they load their data from the Hugging Face hub.
"""
