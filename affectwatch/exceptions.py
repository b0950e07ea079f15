"""The API's exception handler: DRF's, with the status of invalid input made exact where
the schema cannot say in advance what will be refused:

- every error says a referenced object does not exist (code `does_not_exist`: unknown,
  or another organisation's, which reads the same) → 404, like a path naming nothing;
- every error says a value is taken (code `unique`, e.g. a data set's name), or that
  the object's state does not allow it (code `conflict`, e.g. changing the shipped
  model) → 409.

Anything else stays a 400. Bodies are unchanged: a field name → list of sentences."""
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

STATUS_BY_CODE = {"does_not_exist": status.HTTP_404_NOT_FOUND, "unique": status.HTTP_409_CONFLICT,
                  "conflict": status.HTTP_409_CONFLICT}


def _codes(detail):
    if isinstance(detail, dict):
        for value in detail.values():
            yield from _codes(value)
    elif isinstance(detail, list):
        for value in detail:
            yield from _codes(value)
    else:
        yield getattr(detail, "code", None)


def exception_handler(exc, context):
    """DRF's handler; a ValidationError whose errors all carry one code of STATUS_BY_CODE
    answers that status instead of 400."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, ValidationError):
        codes = set(_codes(exc.detail))
        if len(codes) == 1 and (code := codes.pop()) in STATUS_BY_CODE:
            response.status_code = STATUS_BY_CODE[code]
    return response
