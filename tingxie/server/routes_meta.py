"""Everything but the audio: models, health, languages, and the transcription page."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from .errors import ApiError
from .schemas import ERROR_RESPONSES, Health, LanguageList, ModelList, ModelOut
from .settings import DEFAULT_MODEL_ALIASES

# ``router`` asks for the API key (when the server has keys); ``public`` never does, so a browser can load the page
router = APIRouter(tags=["models"])
public = APIRouter(tags=["server"])


def _model_entries(request: Request) -> list[dict]:
    created = int(request.app.state.started)
    names = (*request.app.state.settings.model_names, *DEFAULT_MODEL_ALIASES)
    return [{"id": name, "object": "model", "created": created, "owned_by": "tingxie"} for name in names]


@router.get("/v1/models", response_model=ModelList, responses={401: ERROR_RESPONSES[401]}, summary="The models this server serves")
async def list_models(request: Request) -> dict:
    return {"object": "list", "data": _model_entries(request)}


@router.get("/v1/models/{model}", response_model=ModelOut, responses={401: ERROR_RESPONSES[401], 404: ERROR_RESPONSES[404]}, summary="One served model")
async def retrieve_model(model: str, request: Request) -> dict:
    for entry in _model_entries(request):
        if entry["id"] == model:
            return entry
    raise ApiError(404, f"The model '{model}' does not exist on this server.", param="model", code="model_not_found")


@router.get("/v1/languages", response_model=LanguageList, responses={401: ERROR_RESPONSES[401]}, summary="Language codes and names (tingxie extension)")
async def list_languages() -> dict:
    from ..tokenizer import LANGUAGES

    return {"object": "list", "data": [{"code": code, "name": name} for code, name in LANGUAGES.items()]}


@public.get(
    "/health", response_model=Health, summary="200 once the default model is loaded, 503 before (or if it failed)",
    responses={503: {"model": Health, "description": "The default model is still loading, or failed to load"}},
)
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    settings = state.settings
    models = {name: state.models.status(name) for name in settings.model_names}
    default = models[settings.model]
    status = "ok" if default == "ready" else "loading" if default in ("loading", "not loaded") else "unavailable"
    body = {
        "status": status, "model": settings.model, "models": models,
        "queue": {"workers": state.jobs.workers, "capacity": state.jobs.capacity, "admitted": state.jobs.admitted},
        "auth_required": settings.auth_required, "max_upload_mb": settings.max_upload_mb,
    }
    return JSONResponse(body, status_code=200 if status == "ok" else 503)


def static_page(filename: str) -> HTMLResponse:
    """A page from ``static/`` (its scripts and styles are served under /static). Other route modules use it too."""
    return HTMLResponse(resources.files("tingxie.server").joinpath("static", filename).read_text(encoding="utf-8"))


@public.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return static_page("index.html")
