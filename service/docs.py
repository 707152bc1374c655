"""`GET /openapi.json` and the docs page `GET /docs`: Swagger UI, every file served from here.

Swagger UI's files come from the `swagger-ui-bundle-v2` package (nothing is copied into this
repository, nothing is fetched from elsewhere); the page and the few lines that start Swagger UI
are ours. The page's Content-Security-Policy allows this origin only, so a browser would refuse
anything a CDN could serve.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory

from service import openapi

blueprint = Blueprint("docs", __name__)

SPEC = "usersvc.openapi"
# The files of Swagger UI the page loads; nothing else of the package is served.
ASSETS = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)
ASSET_MAX_AGE = 3600

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>usersvc API</title>
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""

START = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
});
"""


def install(app: Flask, *, metrics: bool) -> None:
    """Build the document once (it does not change while the app runs) and add the routes."""
    app.extensions[SPEC] = orjson.dumps(openapi.build(metrics=metrics))
    app.register_blueprint(blueprint)


@blueprint.get("/openapi.json")
def spec() -> Response:
    return Response(current_app.extensions[SPEC], content_type="application/json")


@blueprint.get("/docs")
def page() -> Response:
    return Response(PAGE, content_type="text/html; charset=utf-8", headers=_page_headers())


@blueprint.get("/docs/start.js")
def start() -> Response:
    return Response(START, content_type="text/javascript; charset=utf-8")


@blueprint.get("/docs/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(_assets_folder(), name, max_age=ASSET_MAX_AGE)


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def _assets_folder() -> Path:
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))
