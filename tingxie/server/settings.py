"""The server's settings: one frozen object built by ``tingxie serve`` (or a test) and read everywhere else."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import OptionError
from ..options import COMPUTE_TYPES

# Names that OpenAI clients send by default; they mean "the server's default model".
DEFAULT_MODEL_ALIASES = ("whisper-1",)


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs; nothing here changes while the server runs."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "tiny.en"
    # further models a request may name; each is loaded on first use and then kept
    extra_models: tuple[str, ...] = ()
    device: str = "auto"
    dtype: str | None = None
    compute_type: str = "auto"  # as load_model's: auto (int8 on a CPU: the fast engine), float32 (the reference's outputs)
    model_dir: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_upload_mb: float = 25.0
    workers: int = 1
    max_queue: int = 8
    # the CLI's defaults (beam search with 5 beams, best of 5 when sampling), so the server answers as `tingxie transcribe` does
    beam_size: int | None = 5
    best_of: int | None = 5
    # transcribe only the speech the Silero VAD finds (TranscribeOptions.vad_filter), for every request
    vad_filter: bool = False
    # seconds a graceful shutdown (SIGTERM, Ctrl-C) lets in-flight requests finish before cancelling their work
    shutdown_timeout: float = 20.0
    # the longest audio a request may hold, checked from its declared duration and while decoding; None: no limit
    max_audio_seconds: float | None = 3 * 3600.0
    # each request's wall-clock limit from admission (queue wait included); its work stops at the next window past it
    max_request_seconds: float | None = 3600.0
    # a connection's request head must arrive within this, and a request body may pause no longer
    read_timeout: float = 10.0
    # a request body must have arrived whole within this
    upload_timeout: float = 300.0
    # an idle keep-alive connection is closed after this (uvicorn's timeout_keep_alive)
    keep_alive_timeout: float = 5.0
    # connections and tasks at once; beyond, uvicorn answers 503 (its limit_concurrency)
    max_connections: int = 64
    # the largest request head h11 buffers (its max_incomplete_event_size); larger gets 400
    max_header_bytes: int = 16 * 1024
    # origins besides the server's own whose pages may open its WebSockets; "*" lets every page in
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "info"
    # where uploads are spooled while they are transcribed; None uses the system temp folder
    upload_dir: str | None = None
    # live streams (/v1/realtime): how many at once, seconds without audio before one is closed, seconds of audio
    # waiting to be decoded beyond which one is closed (it degrades to greedy, longer steps well before), commit policy
    max_streams: int = 4
    stream_idle_timeout: float = 30.0
    max_stream_lag: float = 10.0
    stream_policy: str = "alignatt"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise OptionError(f"workers must be >= 1, got {self.workers}")
        if self.max_queue < 0:
            raise OptionError(f"max_queue must be >= 0, got {self.max_queue}")
        if not self.max_upload_mb > 0:
            raise OptionError(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if not 0 <= self.port <= 65535:
            raise OptionError(f"port must be between 0 and 65535, got {self.port}")
        for name in ("beam_size", "best_of"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"{name} must be >= 1 or None, got {value}")
        if self.compute_type not in COMPUTE_TYPES:
            raise OptionError(f"compute_type must be one of {', '.join(COMPUTE_TYPES)}, not {self.compute_type!r}")
        if self.max_streams < 1:
            raise OptionError(f"max_streams must be >= 1, got {self.max_streams}")
        for name in ("stream_idle_timeout", "max_stream_lag"):
            if not getattr(self, name) > 0:
                raise OptionError(f"{name} must be > 0, got {getattr(self, name)}")
        from ..streaming.options import POLICIES

        if self.stream_policy not in POLICIES:
            raise OptionError(f"stream_policy must be one of {', '.join(POLICIES)}, not {self.stream_policy!r}")
        if any(not key for key in self.api_keys):
            raise OptionError("an API key can't be empty")
        for name in ("max_audio_seconds", "max_request_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise OptionError(f"{name} must be > 0 or None, got {value}")
        for name in ("shutdown_timeout", "read_timeout", "upload_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise OptionError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise OptionError(f"max_connections must be >= 1 and max_header_bytes >= 1024, got {self.max_connections} and {self.max_header_bytes}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def auth_required(self) -> bool:
        return bool(self.api_keys)

    @property
    def model_names(self) -> tuple[str, ...]:
        """The models requests may name, the default first, without duplicates."""
        return tuple(dict.fromkeys((self.model, *self.extra_models)))
