"""Cost of honest controls: N random draws evaluated on one loaded model, as a ratio to one condition.

    python benchmarks/controls.py [--quick] [--draws N] [--limit-rt N] [--limit-wiki N]

Loads the model once, evaluates the normal model (one condition, timed), then a 40-neuron network and
its controls (N draws of a random 15 % mask and N matched draws avoiding the massive channels, plus the
network split at them) with ``fnet_dist.evaluate.controls.evaluate_controls``. Prints seconds per
condition and the whole controls run as a ratio to one condition's evaluation; the ideal is the number of
conditions (no reload, no per-draw overhead beyond evaluation). ``--quick``: a tiny random Llama.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnet_dist.core.conditions import NORMAL, Condition  # noqa: E402
from fnet_dist.model.edit import Edit  # noqa: E402
from fnet_dist.core.config import EvaluateSection, ReportSection  # noqa: E402
from fnet_dist.evaluate.controls import evaluate_controls  # noqa: E402
from fnet_dist.evaluate.draws import control_conditions  # noqa: E402
from fnet_dist.evaluate.runner import evaluate_conditions  # noqa: E402
from fnet_dist.model.masks import NeuronMask  # noqa: E402
from fnet_dist.model.loading import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--limit-rt", type=int, default=40)
    parser.add_argument("--limit-wiki", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fnet-bench-controls-"))
    if args.quick:
        from fnet_dist.model.testing import build_tiny_model

        spec = str(build_tiny_model("llama", work / "tiny"))
    else:
        spec = "smollm2-135m-instruct"
    t0 = time.perf_counter()
    loaded = load_model(spec)
    load_seconds = time.perf_counter() - t0
    shape = (loaded.model.config.num_hidden_layers, loaded.model.config.hidden_size)
    tasks, limit = ["sentiment_rt", "wiki_ppl"], {"sentiment_rt": args.limit_rt, "wiki_ppl": args.limit_wiki}
    evaluate_conditions(loaded, [NORMAL], tasks, work / "warmup", limit={"sentiment_rt": 2, "wiki_ppl": 1}, progress=False)
    t0 = time.perf_counter()
    evaluate_conditions(loaded, [NORMAL], tasks, work / "one", limit=limit, progress=False)
    one = time.perf_counter() - t0
    network = NeuronMask.random(shape, count=min(40, shape[0] * shape[1] // 10), seed=1)
    massive = np.zeros(shape, dtype=bool)
    massive[network.indices()[0][0], network.indices()[0][1]] = True  # one of its neurons on a "massive" channel
    networks = [Condition("network", network, Edit("inhibit"), corpus="bench", template=1)]
    kinds = ("fraction", "matched_avoid_massive")
    settings = EvaluateSection(controls={"kinds": kinds, "draws": args.draws})
    n_conditions = 1 + len(control_conditions(networks, massive, settings))
    t0 = time.perf_counter()
    evaluate_controls(loaded, networks, work / "controls", settings, tasks=tasks, massive=massive,
                      level=ReportSection().level, limit=limit, progress=False)
    controls = time.perf_counter() - t0
    print(f"model {spec}: load {load_seconds:.1f} s (once, not in the ratios)")
    print(f"one condition (normal; {args.limit_rt} snippets + {args.limit_wiki} wiki passages): {one:.1f} s")
    print(f"controls: {n_conditions} conditions ({args.draws} draws x {len(kinds)} kinds + network + split) "
          f"in {controls:.1f} s = {controls / one:.2f} x one condition (ideal {n_conditions}); "
          f"per condition {controls / n_conditions / one:.2f} x")


if __name__ == "__main__":
    main()
