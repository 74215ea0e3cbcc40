"""Report: run folders -> one self-contained HTML page with figures."""

from ltm.report.html import write_report

__all__ = ["write_report"]
