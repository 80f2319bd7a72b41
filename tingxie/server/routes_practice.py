"""``POST /v1/practice``: pronunciation practice (a tingxie extension, not part of the OpenAI API), and the /practice page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import TingxieError
from .errors import from_core
from .routes_meta import static_page
from .schemas import ERROR_RESPONSES
from .uploads import display_name, save_upload

router = APIRouter(tags=["practice"])
public = APIRouter(tags=["server"])

_SUCCESS = {
    200: {
        "description": "Per word of the text: time span, probability and verdict (ok, unclear, missed, replaced), "
        "the score and the words to repeat; as JSON, or as an HTML page with the words coloured and playable",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}}},
    },
}


@public.get("/practice", response_class=HTMLResponse, include_in_schema=False)
async def practice_page() -> HTMLResponse:
    return static_page("practice.html")


def _run_practice(model: Any, path: Any, text: str, language: str | None, response_format: str) -> tuple[Any, str | None]:
    """On a worker thread: decode (no further than the practice limit), score, and render the page when asked."""
    from ..practice import decode_practice_audio, practice, render_html
    from .service import _inference

    def work() -> Any:
        samples = decode_practice_audio(path)
        return samples, practice(model, samples, text, language=language)

    samples, result = _inference(work)  # the ONNX Runtime engine needs no torch: importing it would stall the event loop
    return result, render_html(result, samples) if response_format == "html" else None


@router.post("/v1/practice", summary="Pronunciation practice: score a recording against the text meant",
             responses={**_SUCCESS, **ERROR_RESPONSES}, response_model=None)
async def create_practice(
    request: Request,
    file: Annotated[UploadFile, File(description="The learner's recording: a sentence or two, at most 30 s")],
    text: Annotated[str, Form(min_length=1, description="What the learner meant to say")],
    language: Annotated[str | None, Form(description="Code or name of the text's language; detected if left out")] = None,
    model: Annotated[str | None, Form(description="A model this server serves (GET /v1/models); a multilingual one for languages other than English")] = None,
    response_format: Annotated[Literal["json", "html"], Form(description="json or html")] = "json",
) -> Any:
    state = request.app.state
    settings = state.settings
    name = state.models.resolve(model)
    language = (language or "").strip() or None
    if language is not None:
        from ..tokenizer import normalize_language

        try:
            normalize_language(language)  # the client's mistake: say so before queueing
        except TingxieError as e:
            raise from_core(e, param="language") from e
    slot = state.jobs.admit()
    try:
        loaded = await state.models.get(name)
        path = await run_in_threadpool(save_upload, file.file, file.filename, settings.max_upload_bytes, settings.upload_dir)
        slot.on_release(lambda: path.unlink(missing_ok=True))
        try:
            result, page = await slot.submit(_run_practice, loaded, path, text, language, response_format)
        except TingxieError as e:
            error = from_core(e, param="text" if "text" in str(e) else None)
            error.message = error.message.replace(str(path), display_name(file.filename))
            raise error from e
    finally:
        slot.close_unused()
    if page is not None:
        return HTMLResponse(page)
    return JSONResponse({**result.to_dict(), "model": name})

