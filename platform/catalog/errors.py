"""The API error a media refusal becomes: each decoder's code keeps its HTTP status everywhere."""

from __future__ import annotations

from common.problems import ApiError
from media.errors import MediaError


def media_error_to_api(exc: MediaError) -> ApiError:
    status_by_code = {
        "unsupported_media": 415,
        "active_content": 415,
        "media_too_large": 413,
        "corrupt_media": 422,
        "invalid_encoding": 422,
    }
    return ApiError(str(exc), code=exc.code, status_code=status_by_code.get(exc.code, 422))
