import io
import json
from datetime import datetime, timezone

from rest_framework import renderers

from apps.accounts.errors import sentences
from edge_agent.spreadsheet import SafeWriter

from .trends import COLUMNS, LABELS, RawJSON


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, splicing top-level `RawJSON` values in without decoding them."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raw = {k: v for k, v in data.items() if isinstance(v, RawJSON)} if isinstance(data, dict) else {}
        if not raw:
            return super().render(data, accepted_media_type, renderer_context)
        rest = super().render({k: v for k, v in data.items() if k not in raw}, accepted_media_type, renderer_context)
        spliced = b",".join(json.dumps(k).encode() + b":" + v.encode() for k, v in raw.items())
        return rest[:-1] + (b"," if rest != b"{}" else b"") + spliced + b"}"


class CSVRenderer(renderers.BaseRenderer):
    """`?format=csv` on the trend, breakdown and heatmap endpoints: what the chart shows."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        out = io.StringIO()
        writer = SafeWriter(out)  # a zone named '=HYPERLINK(...)' stays text
        if isinstance(data, dict) and "series" in data:
            series = data["series"]
            times = [datetime.fromtimestamp(t, timezone.utc).isoformat() for t in series["t"]]
            rows = zip(times, *(series[c] for c in COLUMNS[1:]))
            if "comparison" not in data:
                writer.writerow(COLUMNS)
                writer.writerows(rows)
            else:  # the same bucket a year earlier beside each row (empty where it has none)
                last = data["comparison"]
                earlier = {t: [last["series"][c][i] for c in LABELS] for i, t in enumerate(last["aligned_t"])}
                writer.writerow([*COLUMNS, *(f"last_year_{c}" for c in LABELS)])
                writer.writerows([*row, *earlier.get(t, ("",) * len(LABELS))] for t, row in zip(series["t"], rows))
        elif isinstance(data, dict) and "negative_share" in data and "days" in data:
            writer.writerow(["weekday", *[f"{h:02d}:00" for h in data["hours"]]])
            for day, row in zip(data["days"], data["negative_share"]):
                writer.writerow([day, *row])
        elif isinstance(data, dict) and "zones" in data:
            rows = data["zones"]
            if rows:
                writer.writerow(rows[0].keys())
                writer.writerows(r.values() for r in rows)
        else:  # errors and anything else: one sentence a row, never a crash or Python's repr
            writer.writerow(["detail"])
            writer.writerows([line] for line in sentences(data))
        return out.getvalue().encode(self.charset)
