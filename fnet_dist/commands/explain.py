"""``fnet explain --model M --networks NETWORKS --text TEXT --out PAGE.html``: token attribution page."""
from __future__ import annotations

import argparse

from ..core.errors import InputError
from ..model.loading import load_model
from ..report.explain import explain_text
from ..report.explain_page import render_attribution_html
from ..store.locks import output_lock
from ..store.outputs import prepare_output, replacing
from ..store.storage import normalize_url
from .placement import add_placement_arguments, placement

HELP = "shade a text's tokens by each group template's source signal (paper Figures 9-18) into an HTML page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="hub id, local folder, .gguf file or smollm2-135m-instruct (the model the networks came from)")
    parser.add_argument("--networks", required=True, help="networks store (path or URL) written by fnet decompose")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to explain")
    source.add_argument("--text-file", help="read the text from this file (UTF-8)")
    parser.add_argument("--out", required=True, metavar="PAGE.html", help="where to write the HTML page (path or URL)")
    parser.add_argument("--overwrite", action="store_true", help="replace an explain page already at --out")
    parser.add_argument("--components", type=int, nargs="+", default=None, metavar="K",
                        help="template numbers (1-based, as in the match tables; default: all)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="truncate the text to this many tokens (default 1024)")
    parser.add_argument("--hook-module", default=None,
                        help="block output per layer for a family fnet does not know, e.g. 'model.layers.{i}.mlp'")
    parser.add_argument("--revision", default=None, help="model revision (hub models)")
    add_placement_arguments(parser)
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a model's own modelling code (ChatGLM3 …)")


def run(args: argparse.Namespace) -> int:
    import fsspec


    if args.max_tokens < 2:
        raise InputError(f"--max-tokens {args.max_tokens}: expected a whole number of tokens of at least 2 (default 1024)")
    out = normalize_url(args.out)
    with output_lock(out):  # a second writer of this page is refused before the model loads
        prepare_output(out, "explain", overwrite=args.overwrite)  # refused before the model is loaded
        text = args.text
        if args.text_file is not None:
            try:
                with open(args.text_file, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise InputError(f"cannot read --text-file {args.text_file!r}: {exc.strerror}; check the path") from None
        loaded = load_model(args.model, revision=args.revision, device=args.device,
                            trust_remote_code=args.trust_remote_code, **placement(args))
        attribution = explain_text(loaded, args.networks, text, args.components, max_tokens=args.max_tokens,
                                   hook_module=args.hook_module)
        with replacing(out, "explain", overwrite=args.overwrite) as staged, fsspec.open(staged, "w", encoding="utf-8") as handle:
            handle.write(render_attribution_html(attribution))
        print(f"wrote {out}: {len(attribution.token_ids)} tokens, templates {attribution.components}")
    return 0
