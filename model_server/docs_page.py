"""`/docs`: the server's OpenAPI document rendered by Swagger UI, whose script, style sheet
and icon the server serves itself (no CDN: many clusters have no internet).

The assets are those of the pinned `fastapi-offline` package (Swagger UI 5, which reads the
OpenAPI 3.1 document FastAPI writes). The page and its assets are open routes, like
/openapi.json (model_server/auth.py); "Try it out" sends what the Authorize dialog is given,
under the same keys and roles as any client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from model_server.auth import DOCS_ASSETS_PREFIX, DOCS_PATH

ASSETS = DOCS_ASSETS_PREFIX.rstrip("/")
TITLE = "California Housing model server"
# Swagger UI's options: keep a key entered in Authorize across reloads (in the browser's
# local storage, never sent anywhere but this server); show how long each call took.
UI_PARAMETERS = {"persistAuthorization": True, "displayRequestDuration": True}


def asset_folder() -> Path:
    """The folder of Swagger UI's files in the installed fastapi-offline package."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).parent / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():  # the package changed its layout
        raise FileNotFoundError(f"no swagger-ui-bundle.js in {folder}")
    return folder


def install(app: FastAPI) -> None:
    """Serve the page at /docs and its assets under /docs/assets/."""
    app.mount(ASSETS, StaticFiles(directory=asset_folder()), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=TITLE,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=UI_PARAMETERS,
        )

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
