import csv
import io
from datetime import datetime, timezone

from rest_framework.renderers import BaseRenderer

from .trends import COLUMNS


class CSVRenderer(BaseRenderer):
    """`?format=csv` on the trend, breakdown and heatmap endpoints: what the chart shows."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "series" in data:
            series = data["series"]
            times = [datetime.fromtimestamp(t, timezone.utc).isoformat() for t in series["t"]]
            writer.writerow(COLUMNS)
            writer.writerows(zip(times, *(series[c] for c in COLUMNS[1:])))
        elif isinstance(data, dict) and "negative_share" in data and "days" in data:
            writer.writerow(["weekday", *[f"{h:02d}:00" for h in data["hours"]]])
            for day, row in zip(data["days"], data["negative_share"]):
                writer.writerow([day, *row])
        elif isinstance(data, dict) and "zones" in data:
            rows = data["zones"]
            if rows:
                writer.writerow(rows[0].keys())
                writer.writerows(r.values() for r in rows)
        else:  # errors and anything else: a single cell, never a crash
            writer.writerow(["detail"])
            writer.writerow([data.get("detail", data) if isinstance(data, dict) else data])
        return out.getvalue().encode(self.charset)
