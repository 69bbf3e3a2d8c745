"""``fnet explain --model M --networks NETWORKS --text TEXT --out PAGE.html``: token attribution page."""
from __future__ import annotations

import argparse

from ..core.config import MatchSection, ModelSection
from ..core.errors import InputError
from ..flags import MODEL_FLAGS, OVERWRITE_HELP, TEMPLATES_HELP, add_section, renamed, section_from
from ..model.loading import load_model
from ..report.explain import explain_text
from ..report.explain_page import render_attribution_html
from ..store.locks import output_lock
from ..store.outputs import prepare_output, replacing
from ..store.storage import normalize_url

HELP = "shade a text's tokens by each group template's source signal (paper Figures 9-18) into an HTML page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--networks", required=True, help="networks store (path or URL) written by fnet decompose")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to explain")
    source.add_argument("--text-file", help="read the text from this file (UTF-8)")
    parser.add_argument("--out", required=True, metavar="PAGE.html", help="where to write the HTML page (path or URL)")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--templates", "--components", dest="templates", type=int, nargs="+", default=None,
                        metavar="K", action=renamed("store", "--templates"), help=f"{TEMPLATES_HELP} (default: all)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="truncate the text to this many tokens (default 1024)")
    add_section(parser, ModelSection, rename=MODEL_FLAGS)
    add_section(parser, MatchSection, only=("threshold", "two_sided"))


def run(args: argparse.Namespace) -> int:
    import fsspec

    model = section_from(args, ModelSection, rename=MODEL_FLAGS)  # a bad model flag fails before any work
    match = section_from(args, MatchSection)
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
        loaded = load_model(model.id, **model.placement())
        attribution = explain_text(loaded, args.networks, text, args.templates, match=match, max_tokens=args.max_tokens,
                                   hook_module=model.hook_module)
        with replacing(out, "explain", overwrite=args.overwrite) as staged, fsspec.open(staged, "w", encoding="utf-8") as handle:
            handle.write(render_attribution_html(attribution))
        print(f"wrote {out}: {len(attribution.token_ids)} tokens, templates {attribution.components}")
    return 0
