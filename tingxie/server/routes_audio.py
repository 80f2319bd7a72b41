"""``POST /v1/audio/transcriptions`` and ``/v1/audio/translations``, as the OpenAI API defines them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..errors import TingxieError
from . import service
from .errors import ApiError, from_core
from .formats import DOWNLOAD_FORMATS, RESPONSE_FORMATS, render_response
from .schemas import ERROR_RESPONSES, TranscriptionDiarized, inline_schema
from .uploads import display_name, save_upload

router = APIRouter(tags=["audio"])

ResponseFormat = Literal[RESPONSE_FORMATS]  # type: ignore[valid-type]  # the registry's tuple as the schema's enum
Granularity = Literal["word", "segment"]
DownloadFormat = Literal[DOWNLOAD_FORMATS]  # type: ignore[valid-type]
# the CLI's fallback step: temperature T means T, T+0.2, ... up to 1.0 ("0 increases it automatically")
TEMPERATURE_INCREMENT = 0.2

_SUCCESS = {
    200: {
        "description": "The transcript in the requested format; with stream=true, server-sent events",
        "content": {
            "application/json": {"schema": {"anyOf": [
                {"$ref": "#/components/schemas/TranscriptionJson"}, {"$ref": "#/components/schemas/TranscriptionVerbose"},
                inline_schema(TranscriptionDiarized),
            ]}},
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
}

FileField = Annotated[UploadFile, File(description="The audio file: any format ffmpeg decodes (flac, mp3, mp4, m4a, ogg, wav, webm ...)")]
ModelField = Annotated[str | None, Form(description="A model this server serves (GET /v1/models); whisper-1 means the default")]
PromptField = Annotated[str | None, Form(description="Text to guide the model's style or continue a previous segment")]
HotwordsField = Annotated[
    str | None,
    Form(description="tingxie extension: comma-separated words or names to favour (e.g. 'Kubernetes, ComfyUI'); OpenAI clients send it in extra_body"),
]
FormatField = Annotated[ResponseFormat, Form(description="json, text, srt, verbose_json, vtt or diarized_json (segments with speaker; transcriptions only)")]
SpeakerNamesField = Annotated[
    list[str] | None, Form(alias="known_speaker_names[]", description="With diarized_json: names of known voices, one per known_speaker_references[] entry"),
]
SpeakerReferencesField = Annotated[
    list[str] | None,
    Form(alias="known_speaker_references[]", description="With diarized_json: a few seconds of each known voice alone, as a data URL "
                                                         "(data:audio/wav;base64,...)"),
]
TemperatureField = Annotated[float, Form(ge=0, le=1, description="Sampling temperature 0-1; the server raises it automatically when a window fails")]
StreamField = Annotated[bool, Form(description="Send segments as server-sent events as they are decoded")]
FormatsField = Annotated[
    list[DownloadFormat] | None,
    Form(alias="include_formats[]",
         description="tingxie extension: with stream=true, the final event also carries the transcript rendered in these formats"),
]


async def _run(
    request: Request, *, task: str, file: UploadFile, model: str | None, language: str | None, prompt: str | None,
    response_format: str, temperature: float, granularities: tuple[str, ...], stream: bool, include_formats: tuple[str, ...],
    hotwords: str | None = None, speakers: tuple[tuple[str, ...], tuple[Any, ...]] | None = None,
) -> Any:
    """Check the request, take a queue slot, spool the upload, and transcribe (or stream) it (then diarize it, given
    ``speakers``: the known voices' names and samples)."""
    state = request.app.state
    settings = state.settings
    name = state.models.resolve(model)
    word_timestamps = "word" in granularities and (response_format == "verbose_json" or stream)
    options = _options(settings, task=task, language=language, prompt=prompt, temperature=temperature, word_timestamps=word_timestamps, hotwords=hotwords)
    if speakers is not None:
        options = _diarizing(options, stream)
    slot = state.jobs.admit()
    try:
        loaded = await state.models.get(name)
        path = await run_in_threadpool(save_upload, file.file, file.filename, settings.max_upload_bytes, settings.upload_dir)
        slot.on_release(lambda: path.unlink(missing_ok=True))
        job = service.Job(
            model=loaded, model_name=name, audio=path, filename=display_name(file.filename), options=options, task=task,
            granularities=granularities if response_format == "verbose_json" or stream else (), include_formats=include_formats,
            max_audio_seconds=settings.max_audio_seconds, speakers=speakers,
        )
        if stream:
            events = await service.stream(slot, job)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = await service.transcribe(slot, job, request.receive)
        return render_response(result, response_format, task, job.granularities)
    finally:
        slot.close_unused()


def _options(
    settings: Any, *, task: str, language: str | None, prompt: str | None, temperature: float, word_timestamps: bool, hotwords: str | None = None,
) -> Any:
    """The core's TranscribeOptions for this request (the one source of truth for decoding parameters)."""
    from ..options import build_options, temperature_schedule

    language = (language or "").strip() or None
    try:
        if language is not None:
            from ..tokenizer import normalize_language

            normalize_language(language)  # an unknown language is the client's mistake: say so before queueing
        return build_options(
            task=task, language=language, initial_prompt=prompt or None, word_timestamps=word_timestamps,
            temperature=temperature_schedule(temperature, TEMPERATURE_INCREMENT), beam_size=settings.beam_size, best_of=settings.best_of,
            hotwords=(hotwords or "").strip() or None, vad_filter=settings.vad_filter,
        )
    except TingxieError as e:
        raise from_core(e, param="language" if language is not None and "language" in str(e).lower() else None) from e
    except (KeyError, ValueError) as e:
        raise ApiError(400, f"unsupported language {language!r}", param="language", code="unsupported_language") from e


def _diarizing(options: Any, stream: bool) -> Any:
    """The request's options with diarization on (speakers are assigned word by word)."""
    from dataclasses import replace

    if stream:
        raise ApiError(400, "diarized_json can't be streamed: send stream=false", param="stream", code="unsupported_stream")
    return replace(options, diarize=True)


def known_speakers(names: list[str] | None, references: list[str] | None) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """known_speaker_names[] and known_speaker_references[] (data URLs) as names and 16 kHz samples; 400 when they
    do not pair up or a reference is not audio."""
    import base64
    import binascii

    from ..audio import decode_audio

    names, references = [n.strip() for n in names or [] if n.strip()], references or []
    if len(names) != len(references):
        raise ApiError(400, f"known_speaker_names[] and known_speaker_references[] must pair up: {len(names)} names, {len(references)} references",
                       param="known_speaker_references")
    voices = []
    for name, url in zip(names, references):
        header, _, payload = url.partition(",")
        try:
            if not (header.startswith("data:") and header.endswith(";base64")):
                raise ValueError("not a base64 data URL")
            voices.append(decode_audio(base64.b64decode(payload, validate=True)))
        except (ValueError, binascii.Error, TingxieError) as e:
            raise ApiError(400, f"the reference for {name!r} is not audio in a data URL (data:audio/wav;base64,...): {e}",
                           param="known_speaker_references") from e
    return tuple(names), tuple(voices)


@router.post(
    "/v1/audio/transcriptions", summary="Transcribe audio into the language spoken",
    responses={**_SUCCESS, **ERROR_RESPONSES}, response_model=None,
)
async def create_transcription(
    request: Request,
    file: FileField,
    model: ModelField = None,
    language: Annotated[str | None, Form(description="ISO-639-1 code (or name) of the spoken language; detected if left out")] = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TemperatureField = 0.0,
    timestamp_granularities: Annotated[
        list[Granularity] | None,
        Form(alias="timestamp_granularities[]", description="word and/or segment; with response_format=verbose_json"),
    ] = None,
    stream: StreamField = False,
    include_formats: FormatsField = None,
    hotwords: HotwordsField = None,
    known_speaker_names: SpeakerNamesField = None,
    known_speaker_references: SpeakerReferencesField = None,
) -> Any:
    speakers = await run_in_threadpool(known_speakers, known_speaker_names, known_speaker_references) if response_format == "diarized_json" else None
    return await _run(
        request, task="transcribe", file=file, model=model, language=language, prompt=prompt, response_format=response_format,
        temperature=temperature, granularities=tuple(dict.fromkeys(timestamp_granularities or ())), stream=stream,
        include_formats=tuple(dict.fromkeys(include_formats or ())), hotwords=hotwords, speakers=speakers,
    )


@router.post(
    "/v1/audio/translations", summary="Translate audio into English",
    responses={**_SUCCESS, **ERROR_RESPONSES}, response_model=None,
)
async def create_translation(
    request: Request,
    file: FileField,
    model: ModelField = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TemperatureField = 0.0,
    language: Annotated[str | None, Form(description="tingxie extension: the spoken language, if known (detected otherwise)")] = None,
    stream: StreamField = False,
    include_formats: FormatsField = None,
) -> Any:
    if response_format == "diarized_json":
        raise ApiError(400, "diarized_json is for transcriptions (POST /v1/audio/transcriptions)", param="response_format")
    return await _run(
        request, task="translate", file=file, model=model, language=language, prompt=prompt, response_format=response_format,
        temperature=temperature, granularities=(), stream=stream, include_formats=tuple(dict.fromkeys(include_formats or ())),
    )
