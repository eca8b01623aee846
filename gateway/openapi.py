"""The gateway's OpenAPI 3.1 document, with schemas taken from the msgspec structs."""

import functools

import msgspec

from gateway.config import Settings
from gateway.schema import (
    N_FEATURES,
    BatchPrediction,
    BatchRequest,
    Prediction,
    PredictRequest,
)


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Status(msgspec.Struct):
    status: str


def _json(ref: str | None = None, schema: dict | None = None) -> dict:
    schema = schema or {"$ref": f"#/components/schemas/{ref}"}
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    reasons = {
        400: "malformed JSON",
        413: "body too large",
        401: "an API key is required and X-API-Key is missing or wrong",
        405: "method not allowed",
        415: "content-type is not application/json, or the body is compressed",
        429: "over the per-client rate limit; retry after the Retry-After header",
        422: "a field is missing or has the wrong type, count or value",
        502: "the model server answered with an error",
        503: "the model is not ready; retry after the Retry-After header",
        504: "the model did not answer in time",
    }
    return {str(s): {"description": reasons[s], **_json("ErrorBody")} for s in statuses}


def _scoring(summary: str, request: str, response: str) -> dict:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **_json(request)},
            "responses": {
                "200": {"description": "scored", **_json(response)},
                **_errors(400, 401, 405, 413, 415, 422, 429, 502, 503, 504),
            },
        }
    }


@functools.cache
def openapi_document(settings: Settings) -> dict:
    structs = (
        PredictRequest,
        BatchRequest,
        Prediction,
        BatchPrediction,
        ErrorBody,
        Status,
    )
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fraud scoring gateway",
            "version": "1.0.0",
            "description": f"Scores one card transaction ({N_FEATURES} "
            f"numeric features) with model {settings.model_name!r} served by Triton.",
        },
        "paths": {
            "/predict": _scoring(
                "Score one transaction", "PredictRequest", "Prediction"
            ),
            "/predict/batch": _scoring(
                f"Score up to {settings.max_batch_rows} transactions",
                "BatchRequest",
                "BatchPrediction",
            ),
            "/health": {
                "get": {
                    "summary": "The gateway process is alive",
                    "responses": {"200": {"description": "alive", **_json("Status")}},
                }
            },
            "/ready": {
                "get": {
                    "summary": "The model is ready in Triton",
                    "responses": {
                        "200": {"description": "ready", **_json("Status")},
                        **_errors(503),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            **_json(schema={"type": "object"}),
                        }
                    },
                }
            },
        },
        "components": {"schemas": components},
    }
