"""Stage 3, match: networks from z-maps (the rule: ``fnet_dist.core.networks``), IoU between them (``iou``), group templates
against individual maps and across corpora (``matching``: ``match_networks``), massive-activation channels
(``anatomy``), the layer-matched null models of the match claims (``nulls``), the stage's figures
(``figures``) and what it reads and writes (``io``)."""
