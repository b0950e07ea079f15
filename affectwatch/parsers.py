"""The JSON parser every API view uses: DRF's, plus a 400 for bodies that are not a JSON
object (every endpoint reads named fields) and for bodies the standard library cannot
decode without overflowing the stack."""
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """A body nested deeper than Python's recursion limit (e.g. 100,000 `[`) makes
    `json.loads` raise RecursionError, which DRF would turn into a 500. Here it is a 400
    like any other malformed body."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        if not isinstance(data, dict):  # `[]` or `"x"` would meet request.data.get(...)
            raise ParseError(f"the body must be a JSON object, not {type(data).__name__}")
        return data
