"""A corpus of malformed requests sent through nginx: each gets its 4xx, never a 5xx.

    .venv/bin/pytest tests/integration/test_malformed_corpus.py

Every case is one request to the real stack. The answer must carry the expected
status and a JSON body of the stable error shape whose text leaks no stack trace,
file path or internal address; then a good request must still be scored, so no
case leaves the gateway or Triton broken behind it.

Decisions this corpus pins, where the contract leaves room:

- JSON is strict RFC 8259: hex, a leading ``+``, leading zeros, ``.5`` and ``5.``
  are malformed (400); a byte order mark, UTF-8 or UTF-16, is malformed too.
- The NaN and Infinity literals are read but refused as non-finite (422); in
  quotes they are strings (422).
- A number must fit float32 after rounding: 3.4028235e38, float32's maximum as
  every float32 formatter prints it, is accepted; 3.4028236e38 rounds to infinity
  and is refused (422).
- Duplicate keys: the last one wins, as in most JSON parsers, but every
  occurrence is validated, so a bad earlier ``features`` still gets 422.
- Unknown fields are accepted and ignored.
- Request bodies are never decoded from a content coding: any
  ``Content-Encoding`` but ``identity`` is 415, whether the body is gzip or not,
  because reading a body other than the way the client declared it scores
  numbers the client never sent (RFC 9110, section 15.5.16).
- ``application/json`` parameters (charset included, since JSON is always UTF-8)
  and the case of the media type are ignored; ``+json`` types are 415.
"""

import gzip
import json
import re
from dataclasses import dataclass

import httpx2 as httpx
import numpy as np
import pytest

pytestmark = pytest.mark.stack

GOOD = [0.5] * 30
JSON = (("content-type", "application/json"),)
MIB = 1024 * 1024
CODES = {
    400: "malformed_json",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
}
# what a leaked stack trace, source file, socket or internal address looks like
LEAK = re.compile(
    r"Traceback|File \"|\.py\b|\.sock\b|unix:|127\.0\.0\.1|localhost|"
    r"/(?:usr|tmp|home|root|opt|var|etc|run|proc|srv)/"
)


@dataclass(frozen=True)
class Request:
    body: bytes = b""
    status: int | tuple[int, ...] = 422
    field: str | None = None
    path: str = "/predict"
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = JSON


class ContractBroken(AssertionError):
    """The answer to a corpus case broke the contract (what xfail may expect)."""


def dumps(value) -> bytes:
    return json.dumps(value).encode()


def features_with(literal: str, index: int = 0) -> bytes:
    values = [json.dumps(v) for v in GOOD]
    values[index] = literal
    return ('{"features": [' + ", ".join(values) + "]}").encode()


def batch(*rows) -> bytes:
    return dumps({"instances": list(rows)})


def nested(depth: int, closed: bool = True) -> bytes:
    return b"[" * depth + (b"]" * depth if closed else b"")


def case(name: str, request: Request, xfail: str | None = None):
    marks = [pytest.mark.xfail(strict=True, raises=ContractBroken, reason=xfail)]
    return pytest.param(request, id=name, marks=marks if xfail else ())


def post(body: bytes, status=422, field=None, **kwargs) -> Request:
    return Request(body, status, field, **kwargs)


def to_batch(body: bytes, status=422, field=None, **kwargs) -> Request:
    return Request(body, status, field, path="/predict/batch", **kwargs)


def typed(content_type: str, status: int, body: bytes = dumps({"features": GOOD})):
    field = "content-type" if status == 415 else None
    return Request(body, status, field, headers=(("content-type", content_type),))


def call(method: str, path: str, status: int) -> Request:
    return Request(b"", status, None, path, method, headers=())


SYNTAX = [
    case("truncated_json_is_400", post(b'{"features": [0.5, 0.5', 400)),
    case("truncated_after_the_key_is_400", post(b'{"features"', 400)),
    case("trailing_garbage_is_400", post(dumps({"features": GOOD}) + b"xyz", 400)),
    case("a_second_document_is_400", post(dumps({"features": GOOD}) + b"{}", 400)),
    case("a_nul_byte_after_the_document_is_400", post(features_with("1") + b"\0", 400)),
    case("empty_body_is_400", post(b"", 400)),
    case("whitespace_only_body_is_400", post(b" \r\n\t ", 400)),
    case("single_quoted_keys_are_400", post(b"{'features': [1]}", 400)),
    case("a_trailing_comma_is_400", post(b'{"features": [1, 2,]}', 400)),
    case("a_comment_is_400", post(b'{"features": /* x */ [1]}', 400)),
    case("python_none_is_400", post(features_with("None", 3), 400)),
    case("form_encoding_labelled_json_is_400", post(b"features=1,2,3", 400)),
]
TOP_LEVEL = [
    case("top_level_string_is_422", post(b'"features"', 422, "body")),
    case("top_level_number_is_422", post(b"42", 422, "body")),
    case("top_level_null_is_422", post(b"null", 422, "body")),
    case("top_level_true_is_422", post(b"true", 422, "body")),
    case("top_level_array_is_422", post(dumps([GOOD]), 422, "body")),
    # the typed decoder stops at the first "[" (the top level must be an object),
    # so it never reads far enough to see the body is unterminated: both true
    case("ten_thousand_open_brackets_are_4xx", post(nested(10_000, False), (400, 422))),
]
SHAPE = [
    case("missing_features_is_422", post(b"{}", 422, "features")),
    case("misspelled_features_is_422", post(dumps({"feature": GOOD}), 422, "features")),
    case("features_a_string_is_422", post(b'{"features": "0.5"}', 422, "features")),
    case("features_a_number_is_422", post(b'{"features": 0.5}', 422, "features")),
    case("features_null_is_422", post(b'{"features": null}', 422, "features")),
    case("features_an_object_is_422", post(b'{"features": {"0": 1}}', 422, "features")),
    case("29_features_are_422", post(dumps({"features": GOOD[:29]}), 422, "features")),
    case("31_features_are_422", post(dumps({"features": [*GOOD, 1]}), 422, "features")),
    case("0_features_are_422", post(dumps({"features": []}), 422, "features")),
    case(
        "100k_features_are_422",
        post(dumps({"features": [0.5] * 100_000}), 422, "features"),
    ),
    case(
        "an_object_inside_features_is_422",
        post(features_with('{"a": 1}', 3), 422, "features[3]"),
    ),
    case(
        "a_list_inside_features_is_422",
        post(features_with("[1, 2]", 3), 422, "features[3]"),
    ),
    case(
        "a_string_inside_features_is_422",
        post(features_with('"abc"', 4), 422, "features[4]"),
    ),
    case(
        "a_numeric_string_is_422", post(features_with('"1.5"', 0), 422, "features[0]")
    ),
    case("a_boolean_is_422", post(features_with("true", 7), 422, "features[7]")),
    case("a_null_is_422", post(features_with("null", 29), 422, "features[29]")),
    case(
        "ten_thousand_levels_inside_features_are_4xx",
        post(b'{"features": ' + nested(10_000) + b"}", (400, 422)),
    ),
    case(
        "ten_thousand_unclosed_levels_inside_features_are_4xx",
        post(b'{"features": ' + nested(10_000, False), (400, 422)),
    ),
    case(
        "deep_nesting_in_an_unknown_field_is_ignored_or_400",
        post(
            b'{"x": ' + nested(2_000) + b', "features": ' + dumps(GOOD) + b"}",
            (200, 400),
        ),
    ),
]
BATCH = [
    case(
        "batch_without_instances_is_422",
        to_batch(dumps({"features": GOOD}), 422, "instances"),
    ),
    case("batch_with_no_rows_is_422", to_batch(batch(), 422, "instances")),
    case(
        "batch_of_a_flat_row_is_422",
        to_batch(dumps({"instances": GOOD}), 422, "instances[0]"),
    ),
    case(
        "batch_row_of_29_is_422", to_batch(batch(GOOD, GOOD[:29]), 422, "instances[1]")
    ),
    case("batch_row_an_object_is_422", to_batch(batch({"a": 1}), 422, "instances[0]")),
    case(
        "batch_three_levels_deep_is_422",
        to_batch(batch([GOOD]), 422, "instances[0][0]"),
    ),
    case(
        "batch_string_value_is_422", to_batch(batch(["x"] * 30), 422, "instances[0][0]")
    ),
    case("batch_of_257_rows_is_422", to_batch(batch(*[GOOD] * 257), 422, "instances")),
    case(
        "batch_of_100k_numbers_is_422",
        to_batch(batch(*[GOOD] * 3334), 422, "instances"),
    ),
    case(
        "batch_row_of_100k_is_422",
        to_batch(batch([0.5] * 100_000), 422, "instances[0]"),
    ),
    case(
        "batch_nan_in_second_row_is_422",
        to_batch(
            b'{"instances": [' + dumps(GOOD) + b", [" + b"NaN, " * 29 + b"0]]}",
            422,
            "instances[1][0]",
        ),
    ),
    case("batch_top_level_array_is_422", to_batch(dumps([GOOD]), 422, "body")),
    case("batch_truncated_is_400", to_batch(b'{"instances": [[0.5', 400)),
    case(
        "batch_nested_ten_thousand_deep_is_4xx",
        to_batch(b'{"instances": ' + nested(10_000) + b"}", (400, 422)),
    ),
]
NUMBERS = [
    case(
        "1e308_is_beyond_float32_422", post(features_with("1e308"), 422, "features[0]")
    ),
    case(
        "minus_1e308_is_beyond_float32_422",
        post(features_with("-1e308"), 422, "features[0]"),
    ),
    case(
        "1e309_is_beyond_float64_422", post(features_with("1e309"), 422, "features[0]")
    ),
    case("5e-324_rounds_to_zero_200", post(features_with("5e-324"), 200)),
    case("float32_max_as_printed_is_200", post(features_with("3.4028235e38"), 200)),
    case("just_below_float32_max_is_200", post(features_with("-3.4028234e38"), 200)),
    case(
        "rounding_to_float32_inf_is_422",
        post(features_with("3.4028236e38"), 422, "features[0]"),
    ),
    case(
        "3.5e38_is_beyond_float32_422",
        post(features_with("3.5e38"), 422, "features[0]"),
    ),
    case("negative_zero_is_200", post(features_with("-0.0"), 200)),
    case("1e-50_underflows_to_zero_200", post(features_with("1e-50"), 200)),
    case("capital_exponent_is_200", post(features_with("1E5"), 200)),
    case("a_30_digit_integer_is_200", post(features_with("9" * 30), 200)),
    case("a_500_digit_fraction_is_200", post(features_with("0." + "7" * 500), 200)),
    case(
        "a_400_digit_integer_is_422",
        post(features_with("1" + "0" * 400), 422, "features[0]"),
    ),
    case("hex_is_400", post(features_with("0x10"), 400)),
    case("a_leading_plus_is_400", post(features_with("+1"), 400)),
    case("leading_zeros_are_400", post(features_with("007"), 400)),
    case("a_bare_fraction_is_400", post(features_with(".5"), 400)),
    case("a_trailing_dot_is_400", post(features_with("5."), 400)),
    case("an_empty_exponent_is_400", post(features_with("1e"), 400)),
    case("nan_literal_is_422", post(features_with("NaN", 3), 422, "features[3]")),
    case(
        "infinity_literal_is_422",
        post(features_with("Infinity", 5), 422, "features[5]"),
    ),
    case(
        "minus_infinity_literal_is_422",
        post(features_with("-Infinity", 6), 422, "features[6]"),
    ),
    case("nan_string_is_422", post(features_with('"NaN"', 3), 422, "features[3]")),
    case(
        "infinity_string_is_422",
        post(features_with('"Infinity"', 5), 422, "features[5]"),
    ),
    case(
        "minus_infinity_string_is_422",
        post(features_with('"-Infinity"', 6), 422, "features[6]"),
    ),
]
KEYS = [
    case(
        "duplicate_key_last_short_is_422",
        post(
            b'{"features": '
            + dumps(GOOD)
            + b', "features": '
            + dumps(GOOD[:29])
            + b"}",
            422,
            "features",
        ),
    ),
    case(
        "duplicate_key_first_short_is_422",
        post(
            b'{"features": '
            + dumps(GOOD[:29])
            + b', "features": '
            + dumps(GOOD)
            + b"}",
            422,
            "features",
        ),
    ),
    case(
        "an_unknown_field_is_ignored", post(dumps({"features": GOOD, "note": "x"}), 200)
    ),
    case(
        "an_unknown_object_is_ignored",
        post(dumps({"features": GOOD, "meta": {"a": [1, {}]}}), 200),
    ),
    case(
        "an_unknown_field_in_a_batch_is_ignored",
        to_batch(dumps({"instances": [GOOD], "id": 7}), 200),
    ),
    case(
        "a_query_string_is_ignored",
        post(dumps({"features": GOOD}), 200, path="/predict?debug=1"),
    ),
]
CONTENT_TYPES = [
    case(
        "no_content_type_is_415",
        post(dumps({"features": GOOD}), 415, "content-type", headers=()),
    ),
    case("text_plain_is_415", typed("text/plain", 415)),
    case("multipart_is_415", typed("multipart/form-data; boundary=x", 415)),
    case("form_urlencoded_is_415", typed("application/x-www-form-urlencoded", 415)),
    case("json_patch_is_415", typed("application/json-patch+json", 415)),
    case("a_vendor_json_type_is_415", typed("application/vnd.api+json", 415)),
    case("a_json_lookalike_is_415", typed("application/jsonx", 415)),
    case(
        "json_with_odd_params_is_200",
        typed("application/json; charset=utf-8; v=2", 200),
    ),
    case("json_in_capitals_is_200", typed("APPLICATION/JSON", 200)),
    case(
        "a_charset_other_than_utf8_is_ignored",
        typed("application/json; charset=utf-16", 200),
    ),
    case(
        "two_content_types_are_415",
        post(
            dumps({"features": GOOD}),
            415,
            headers=(("content-type", "text/plain"), *JSON),
        ),
    ),
]
SIZES = [
    case("just_over_1_mib_is_413", post(dumps({"features": GOOD}).ljust(MIB + 1), 413)),
    case("exactly_1_mib_is_200", post(dumps({"features": GOOD}).ljust(MIB), 200)),
    case(
        "an_oversize_header_is_4xx_json",
        post(
            dumps({"features": GOOD}),
            (400, 431),
            headers=(*JSON, ("x-pad", "a" * 16_384)),
        ),
    ),
    case(
        "an_oversize_url_is_414_json",
        post(dumps({"features": GOOD}), 414, path="/predict?" + "a" * 16_384),
    ),
]
ENCODINGS = [
    case("invalid_utf8_in_a_value_is_400", post(b'{"features": ["\xff"]}', 400)),
    case(
        "invalid_utf8_in_an_unknown_field_is_400",
        post(b'{"features": ' + dumps(GOOD) + b', "note": "\xff\xfe"}', 400),
    ),
    case(
        "a_lone_surrogate_is_400",
        post(b'{"features": ' + dumps(GOOD) + b', "n": "\\ud800"}', 400),
    ),
    case("utf16_with_bom_is_400", post('{"features": [1]}'.encode("utf-16"), 400)),
    case("a_utf8_bom_is_400", post(b"\xef\xbb\xbf" + dumps({"features": GOOD}), 400)),
    case(
        "a_gzip_body_is_415",
        post(
            gzip.compress(dumps({"features": GOOD}), mtime=0),
            415,
            headers=(*JSON, ("content-encoding", "gzip")),
        ),
    ),
    case(
        "a_plain_body_labelled_gzip_is_415",
        post(
            dumps({"features": GOOD}),
            415,
            headers=(*JSON, ("content-encoding", "gzip")),
        ),
    ),
    case(
        "identity_coding_is_200",
        post(
            dumps({"features": GOOD}),
            200,
            headers=(*JSON, ("content-encoding", "identity")),
        ),
    ),
]
METHODS_AND_PATHS = [
    case("get_predict_is_405", call("GET", "/predict", 405)),
    case("put_predict_is_405", call("PUT", "/predict", 405)),
    case("delete_predict_is_405", call("DELETE", "/predict", 405)),
    case("patch_predict_is_405", call("PATCH", "/predict", 405)),
    case("get_batch_is_405", call("GET", "/predict/batch", 405)),
    case("delete_batch_is_405", call("DELETE", "/predict/batch", 405)),
    case("post_health_is_405", call("POST", "/health", 405)),
    case("post_ready_is_405", call("POST", "/ready", 405)),
    case("post_openapi_is_405", call("POST", "/openapi.json", 405)),
    case("trace_predict_is_405_json", call("TRACE", "/predict", 405)),
    case("trace_health_is_405_json", call("TRACE", "/health", 405)),
    case("an_unknown_method_is_4xx_json", call("FROB", "/predict", (400, 405))),
    case(
        "a_trailing_slash_is_404",
        post(dumps({"features": GOOD}), 404, path="/predict/"),
    ),
    case(
        "a_capitalized_path_is_404",
        post(dumps({"features": GOOD}), 404, path="/PREDICT"),
    ),
    case("an_unknown_path_is_404", call("GET", "/admin", 404)),
    case("the_repository_index_is_403", call("POST", "/v2/repository/index", 403)),
    case(
        "unloading_the_model_is_403",
        call("POST", "/v2/repository/models/fraud_xgb/unload", 403),
    ),
]
CORPUS = [
    *SYNTAX,
    *TOP_LEVEL,
    *SHAPE,
    *BATCH,
    *NUMBERS,
    *KEYS,
    *CONTENT_TYPES,
    *SIZES,
    *ENCODINGS,
    *METHODS_AND_PATHS,
]


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.nginx, timeout=30) as session:
        yield session


def send(client: httpx.Client, request: Request) -> httpx.Response:
    return client.request(
        request.method,
        request.path,
        content=request.body or None,
        headers=list(request.headers),
    )


def assert_scored(answer: httpx.Response) -> dict:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    scores = [p["fraud_score"] for p in body.get("predictions", [body])]
    assert scores and all(0.0 <= score <= 1.0 for score in scores)
    return body


def assert_error_shape(answer: httpx.Response, request: Request) -> None:
    content_type = answer.headers.get("content-type", "")
    assert content_type.startswith("application/json"), (content_type, answer.text)
    assert set(answer.json()) == {"error"}, answer.text
    error = answer.json()["error"]
    assert set(error) <= {"code", "message", "field"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["code"], str) and error["code"]
    if isinstance(request.status, int) and request.status in CODES:
        assert error["code"] == CODES[request.status]
    if request.field is not None:
        assert error.get("field") == request.field
    if answer.status_code == 405:
        assert answer.headers.get("allow"), "a 405 must name the allowed methods"


def assert_answer(answer: httpx.Response, request: Request) -> None:
    expected = request.status
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert answer.status_code in expected, answer.text[:300]
    assert not LEAK.search(answer.text), answer.text[:300]
    if answer.status_code == 200:
        assert_scored(answer)
    else:
        assert_error_shape(answer, request)


@pytest.mark.parametrize("request_", CORPUS)
def test_malformed_request_gets_its_4xx_and_the_service_still_scores(client, request_):
    answer = send(client, request_)
    after = client.post("/predict", json={"features": GOOD})

    assert_scored(after)
    try:
        assert_answer(answer, request_)
    except AssertionError as exc:
        raise ContractBroken(str(exc)) from exc


def test_corpus_is_large_and_names_are_unique():
    names = [param.id for param in CORPUS]

    assert len(names) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "request_",
    [
        post(b"{}", headers=(*JSON, ("x-pad", "a" * 16_384))),
        post(b"{}", path="/predict?" + "a" * 16_384),
    ],
    ids=["oversize_header", "oversize_url"],
)
def test_oversize_request_head_is_refused_with_4xx_not_5xx(client, request_):
    answer = send(client, request_)

    assert 400 <= answer.status_code < 500
    assert_scored(client.post("/predict", json={"features": GOOD}))


@pytest.fixture(scope="module")
def distinct_rows(holdout) -> tuple[list, list]:
    """Two held-out rows whose scores differ widely."""
    order = np.argsort(holdout["scores"])
    low, high = holdout["features"][order[0]], holdout["features"][order[-1]]
    return low.tolist(), high.tolist()


def test_duplicate_features_key_scores_the_last_value(client, distinct_rows):
    low, high = distinct_rows
    body = b'{"features": ' + dumps(low) + b', "features": ' + dumps(high) + b"}"

    duplicated = send(client, post(body, 200))
    last_alone = client.post("/predict", json={"features": high})
    first_alone = client.post("/predict", json={"features": low})

    score = assert_scored(duplicated)["fraud_score"]
    assert score == assert_scored(last_alone)["fraud_score"]
    assert score != assert_scored(first_alone)["fraud_score"]


def test_duplicate_key_error_counts_the_offending_occurrence(client):
    body = b'{"features": ' + dumps(GOOD[:29]) + b', "features": ' + dumps(GOOD) + b"}"

    answer = send(client, post(body))

    assert answer.status_code == 422
    message = answer.json()["error"]["message"]
    assert "fewer than 30 values" in message and "holds 30" not in message
