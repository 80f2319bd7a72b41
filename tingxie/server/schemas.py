"""Response shapes, for the OpenAPI schema (the handlers build the bodies; these describe them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, in a sentence fit to show a user")
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error")
    param: str | None = Field(description="The request field at fault, if any")
    code: str | None = Field(description="A stable machine-readable code, e.g. invalid_audio, file_too_large, invalid_api_key")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    type: Literal["duration"]
    seconds: float = Field(description="Seconds of audio, rounded up")


class TranscriptionJson(BaseModel):
    """``response_format=json``"""

    text: str
    usage: Usage


class SegmentOut(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class WordOut(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionVerbose(BaseModel):
    """``response_format=verbose_json``"""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="The language's English name in lower case, e.g. english")
    duration: float
    text: str
    segments: list[SegmentOut] | None = Field(default=None, description="With timestamp_granularities[] segment (the default)")
    words: list[WordOut] | None = Field(default=None, description="With timestamp_granularities[] word")
    usage: Usage


class DiarizedSegmentOut(BaseModel):
    type: Literal["transcript.text.segment"]
    id: str
    start: float
    end: float
    text: str
    speaker: str = Field(description="A, B, ... in order of first words, or the matching known_speaker_names[] entry")


class TranscriptionDiarized(BaseModel):
    """``response_format=diarized_json``"""

    task: Literal["transcribe"]
    duration: float
    text: str
    segments: list[DiarizedSegmentOut]
    usage: Usage


def inline_schema(model: type[BaseModel]) -> dict:
    """A model's JSON schema with its nested models written in place (for a response documented without a $ref)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


class ModelOut(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


class QueueInfo(BaseModel):
    workers: int
    capacity: int = Field(description="Jobs admitted at most at once, running and waiting")
    admitted: int


class Health(BaseModel):
    status: Literal["ok", "loading", "unavailable"]
    model: str
    models: dict[str, str] = Field(description="Each served model: ready, loading, not loaded or failed: <reason>")
    queue: QueueInfo
    auth_required: bool
    max_upload_mb: float


class LanguageOut(BaseModel):
    code: str
    name: str


class LanguageList(BaseModel):
    object: Literal["list"]
    data: list[LanguageOut]


ERROR_RESPONSES = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: undecodable audio, unknown language, bad parameter",
        401: "Missing or wrong API key (only when the server has keys)",
        404: "Unknown model",
        413: "Upload over the server's size limit",
        429: "Server busy: every worker is busy and the queue is full; see Retry-After",
        503: "The model could not be loaded",
    }.items()
}
