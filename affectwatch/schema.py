"""The OpenAPI schema's AutoSchema: every operation documents the errors it can answer,
so clients generated from the schema expect them (drf-spectacular documents only the
success response unless told).

Error bodies are JSON objects: `{"detail": "a sentence"}`, or for invalid input a field
name → list of sentences (DRF's validation errors)."""
from drf_spectacular.openapi import AutoSchema

ERRORS = {
    "400": "Invalid input: a field (or `detail`) names what is wrong",
    "401": "Not authenticated: no, or a revoked, token or session",
    "403": "Authenticated, but this role or token scope may not do this",
    "404": "No such object among the caller's own (another organisation's reads as missing), in the path "
           "or as a reference in the body",
}
THROTTLED = {"429": "Too many requests from this address or board: `Retry-After` says when to try again"}
BODY_ERRORS = {
    "409": "Conflicts with the object's state or with another object (a name already taken)",
    "413": "Body larger than the limit (checked before it is read)",
    "415": "Unsupported content type or encoding",
}
ERROR_BODY = {"type": "object", "additionalProperties": True,
              "description": '{"detail": "..."} or {"field": ["...", ...]}'}


class DocumentedErrorsSchema(AutoSchema):
    """drf-spectacular's AutoSchema, adding the documented error answers to every
    operation (and 429 to throttled ones)."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        errors = dict(ERRORS)
        if self.method in ("POST", "PUT", "PATCH"):
            errors.update(BODY_ERRORS)
        if getattr(self.view, "throttle_classes", None):
            errors.update(THROTTLED)
        content = {"application/json": {"schema": ERROR_BODY}}
        if any(getattr(r, "format", "") == "csv" for r in getattr(self.view, "renderer_classes", ())):
            # `?format=csv` answers its errors in CSV too: a `detail` column, a sentence a row
            content["text/csv"] = {"schema": {"type": "string"}}
        for code, description in errors.items():
            responses.setdefault(code, {"description": description, "content": content})
        return responses


NO_NUL = "^[^\\u0000]*$"


def _forbid_nul(schema) -> None:
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"format", "enum", "pattern"} & schema.keys():
        schema["pattern"] = NO_NUL
    for sub in (schema.get("properties") or {}).values():
        _forbid_nul(sub)
    for key in ("items", "additionalProperties"):
        _forbid_nul(schema.get(key))
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(key) or ():
            _forbid_nul(sub)


def forbid_nul_in_requests(result, generator, request, public):
    """drf-spectacular postprocessing hook: text a request sends (query parameters and
    body fields) may not hold NUL — DRF refuses it in fields, the middleware in query
    strings (PostgreSQL cannot store it) — so the schema says so with a `pattern`."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if name.endswith("Request"):  # COMPONENT_SPLIT_REQUEST's request components
            _forbid_nul(schema)
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                _forbid_nul(parameter.get("schema"))
            for media in (operation.get("requestBody") or {}).get("content", {}).values():
                if "$ref" not in media.get("schema", {}):
                    _forbid_nul(media.get("schema"))
    return result
