"""The run report: ``build_report(config, layout, model=None)`` and the page builder it uses."""
from .build import build_report
from .page import Finding, Page

__all__ = ["Finding", "Page", "build_report"]
