"""Serves plotly.js from the installed `plotly` package, so pages never need a CDN and
the chart library always matches the Python figures' version."""
from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class PlotlyFinder(BaseFinder):
    prefix = "vendor"

    def __init__(self, *args, **kwargs):
        self.storage = FileSystemStorage(location=str(PLOTLY_JS.parent))
        self.storage.prefix = self.prefix

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == f"{self.prefix}/plotly.min.js":
            return [str(PLOTLY_JS)] if find_all else str(PLOTLY_JS)
        return []

    def list(self, ignore_patterns):
        yield "plotly.min.js", self.storage
