"""The run report: ``build_report(config, layout, model=None)`` and the page builder it uses."""
from .build import build_report
from .page import Page

__all__ = ["Page", "build_report"]
